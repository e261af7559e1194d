"""The one wait helper: what it returns, what it retries, and what it says when time is up."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from localcluster.waiting import WaitTimeout, wait_for, wait_for_async


def answers(*values: object) -> Callable[[], object]:
    """A probe that gives ``values`` one call at a time (an exception instance is raised)."""
    remaining: Iterator[object] = iter(values)

    def probe() -> object:
        value = next(remaining)
        if isinstance(value, Exception):
            raise value
        return value

    return probe


def test_returns_the_first_truthy_answer() -> None:
    assert wait_for("a value", answers(None, 0, "", "found", "later"), interval=0) == "found"


def test_an_exception_means_not_yet() -> None:
    probe = answers(ConnectionRefusedError("not listening"), ValueError("half written"), 5)
    assert wait_for("a server", probe, interval=0) == 5


def test_an_assertion_error_fails_at_once() -> None:
    with pytest.raises(AssertionError, match="exited early"):
        wait_for("a worker", answers(AssertionError("exited early"), True), interval=0)


def test_time_up_names_what_was_awaited_and_what_was_seen() -> None:
    with pytest.raises(WaitTimeout) as raised:
        wait_for("two ready pods", answers([]), timeout=0, interval=0)
    assert str(raised.value) == "timed out after 0s waiting for two ready pods; last seen: []"


def test_time_up_reports_the_last_exception() -> None:
    with pytest.raises(WaitTimeout, match=r"last seen: ValueError: boom$"):
        wait_for("anything", answers(ValueError("boom")), timeout=0, interval=0)


def test_describe_replaces_the_last_answer() -> None:
    with pytest.raises(WaitTimeout, match=r"last seen: operator log tail$"):
        wait_for("readiness", answers(False), timeout=0, describe=lambda: "operator log tail")


def test_a_timeout_is_an_assertion_error() -> None:
    # Test failures read as failed assertions, not as errors of the harness.
    assert issubclass(WaitTimeout, AssertionError)


async def test_async_awaits_coroutine_probes() -> None:
    calls: list[int] = []

    async def probe() -> int | None:
        calls.append(1)
        return len(calls) if len(calls) == 3 else None

    assert await wait_for_async("the third call", probe, interval=0) == 3


async def test_async_takes_plain_probes_and_the_same_rules() -> None:
    assert await wait_for_async("a value", answers(OSError("down"), "up"), interval=0) == "up"
    with pytest.raises(WaitTimeout, match=r"waiting for rows; last seen: 0$"):
        await wait_for_async("rows", answers(0), timeout=0, interval=0)
    with pytest.raises(AssertionError, match="gone"):
        await wait_for_async("a process", answers(AssertionError("gone")), interval=0)

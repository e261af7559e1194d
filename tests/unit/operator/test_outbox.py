"""The outbox's retry, ordering and bounds, with a scripted sender and a recorded sleep."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable
from datetime import UTC, datetime

import pytest

from workerfleet.operator.notifications.outbox import Outbox, RetryPolicy, Target
from workerfleet.operator.notifications.payloads import Notification
from workerfleet.operator.notifications.webhook import Attempt

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
TARGET = Target(url="http://127.0.0.1:1/secret-token", format="generic", timeout_seconds=1.0)


def notification(pool: str = "emails") -> Notification:
    return Notification(
        namespace="ns",
        monitor="m",
        rule="noWorkersWithPending",
        pool=pool,
        state="firing",
        since=T0,
        message="5 jobs ready to run, 0 workers online",
    )


class Script:
    """A sender answering with the given outcomes in turn (then 200), recording what it got."""

    def __init__(self, outcomes: Iterable[Attempt]) -> None:
        self.outcomes = list(outcomes)
        self.sent: list[str] = []
        self.done = asyncio.Event()
        self.expected = 0

    async def __call__(self, target: Target, n: Notification) -> Attempt:
        self.sent.append(n.pool)
        outcome = self.outcomes.pop(0) if self.outcomes else Attempt(200)
        if len(self.sent) >= self.expected:
            self.done.set()
        return outcome


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


async def drain(outbox: Outbox, script: Script, attempts: int) -> None:
    script.expected = attempts
    await asyncio.wait_for(script.done.wait(), timeout=5)
    for _ in range(10):  # let the outbox book the last outcome
        await asyncio.sleep(0)


async def test_500_twice_then_200_is_delivered_once_after_two_backoffs() -> None:
    script, sleeps = Script([Attempt(500), Attempt(500)]), Sleeps()
    outbox = Outbox(script, sleep=sleeps, rng=lambda: 0.5)
    outbox.configure(TARGET)
    outbox.put(notification())
    await drain(outbox, script, 3)
    record = outbox.take_record()
    assert (record.delivered, record.failed, outbox.pending) == (1, 0, 0)
    assert script.sent == ["emails"] * 3
    # equal jitter: half of base * 2^(n-1) fixed, half random (rng 0.5), never below base
    assert sleeps.delays == [1.0, 1.5]
    assert record.last_failure == "HTTP 500 from the webhook (attempt 2, retrying)"
    await outbox.close()


async def test_retry_after_is_honoured_and_capped() -> None:
    script, sleeps = (
        Script([Attempt(429, retry_after_seconds=7), Attempt(429, retry_after_seconds=9999)]),
        Sleeps(),
    )
    outbox = Outbox(script, sleep=sleeps, policy=RetryPolicy(retry_after_cap_seconds=300))
    outbox.configure(TARGET)
    outbox.put(notification())
    await drain(outbox, script, 3)
    assert sleeps.delays == [7, 300]
    assert outbox.take_record().delivered == 1
    await outbox.close()


async def test_a_refusal_is_not_retried_and_the_next_one_goes() -> None:
    script, sleeps = Script([Attempt(404)]), Sleeps()
    outbox = Outbox(script, sleep=sleeps)
    outbox.configure(TARGET)
    outbox.put(notification("a"))
    outbox.put(notification("b"))
    await drain(outbox, script, 2)
    record = outbox.take_record()
    assert (record.delivered, record.failed) == (1, 1)
    assert script.sent == ["a", "b"]
    assert sleeps.delays == []
    assert record.last_failure == "HTTP 404 from the webhook (not retried)"
    await outbox.close()


async def test_gives_up_after_max_attempts() -> None:
    script, sleeps = Script([Attempt(None, "timed out after 1s")] * 3), Sleeps()
    outbox = Outbox(script, sleep=sleeps, policy=RetryPolicy(max_attempts=3))
    outbox.configure(TARGET)
    outbox.put(notification())
    await drain(outbox, script, 3)
    record = outbox.take_record()
    assert (record.delivered, record.failed, outbox.pending) == (0, 1, 0)
    assert len(sleeps.delays) == 2
    assert record.last_failure == "timed out after 1s (gave up after 3 attempts)"
    await outbox.close()


async def test_nothing_is_sent_without_a_target_and_everything_once_it_comes() -> None:
    script = Script([])
    outbox = Outbox(script, sleep=Sleeps())
    outbox.put(notification("a"))
    outbox.put(notification("b"))
    for _ in range(10):
        await asyncio.sleep(0)
    assert (script.sent, outbox.pending) == ([], 2)
    outbox.configure(TARGET)
    await drain(outbox, script, 2)
    assert script.sent == ["a", "b"]
    await outbox.close()


async def test_put_never_waits_for_a_hanging_receiver_and_a_full_outbox_drops_the_oldest() -> None:
    release = asyncio.Event()
    sent: list[str] = []

    async def hanging(target: Target, n: Notification) -> Attempt:
        sent.append(n.pool)
        await release.wait()
        return Attempt(200)

    outbox = Outbox(hanging, capacity=3, sleep=Sleeps())
    outbox.configure(TARGET)
    outbox.put(notification("first"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert sent == ["first"]  # in flight, hanging
    for pool in ("second", "third", "fourth"):
        outbox.put(notification(pool))  # returns at once every time
    assert outbox.pending == 3
    record = outbox.take_record()
    assert record.failed == 1  # "second" made room; the one in flight stays
    assert record.last_failure == "outbox full: the oldest waiting notification was dropped"
    release.set()
    for _ in range(20):
        await asyncio.sleep(0)
    assert sent == ["first", "third", "fourth"]
    assert outbox.take_record().delivered == 3
    await outbox.close()


@pytest.mark.parametrize("attempt", [1, 2, 5, 20])
def test_backoff_delays_stay_between_half_the_step_and_the_step(attempt: int) -> None:
    policy = RetryPolicy(base_seconds=1.0, cap_seconds=60.0)
    step = min(60.0, 2.0 ** (attempt - 1))
    for draw in (0.0, 0.5, 0.999):
        delay = policy.delay(attempt, Attempt(500), functools.partial(float, draw))
        assert max(step / 2, policy.base_seconds) <= delay <= step


def test_a_target_never_shows_its_url() -> None:
    assert "secret-token" not in repr(TARGET)
    assert "secret-token" not in str(TARGET)

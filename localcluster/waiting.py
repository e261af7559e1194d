"""Waiting for a condition, failing with what was awaited and what was seen.

The one wait helper of the local cluster, the demo and every test tier: `wait_for` from
plain code, `wait_for_async` from inside an event loop (its probe may also be a coroutine
function). A probe's exceptions count as "not yet" and are reported if time runs out,
except AssertionError: a probe raises that to say the condition can never hold (the
process it waits on has exited), and the wait fails at once.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")

DEFAULT_TIMEOUT_SECONDS = 60.0
DEFAULT_INTERVAL_SECONDS = 0.5


@dataclass(frozen=True)
class _Raised:
    """A probe call that raised: not yet, and what to report if it stays so."""

    error: Exception

    def __repr__(self) -> str:
        return f"{type(self.error).__name__}: {self.error}"


class WaitTimeout(AssertionError):
    """The awaited condition did not hold in time."""


class _Wait(Generic[T]):
    """One wait: its deadline, the value it ends with, and what the probe said last."""

    def __init__(
        self, description: str, timeout: float, describe: Callable[[], str] | None
    ) -> None:
        self._description = description
        self._timeout = timeout
        self._describe = describe
        self._deadline = time.monotonic() + timeout
        self.value: T | None = None

    def done(self, outcome: T | _Raised | None) -> bool:
        """True when the outcome is truthy; raises WaitTimeout once time is up."""
        if outcome and not isinstance(outcome, _Raised):
            self.value = outcome
            return True
        if time.monotonic() >= self._deadline:
            seen = self._describe() if self._describe is not None else repr(outcome)
            raise WaitTimeout(
                f"timed out after {self._timeout:.0f}s waiting for {self._description}; "
                f"last seen: {seen}"
            )
        return False


def _attempt(probe: Callable[[], T | None]) -> T | _Raised | None:
    try:
        return probe()
    except AssertionError:
        raise
    except Exception as error:
        return _Raised(error)


async def _attempt_async(probe: Callable[[], T | Awaitable[T | None] | None]) -> T | _Raised | None:
    try:
        value = probe()
        return await value if inspect.isawaitable(value) else value
    except AssertionError:
        raise
    except Exception as error:
        return _Raised(error)


def wait_for(
    description: str,
    probe: Callable[[], T | None],
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    interval: float = DEFAULT_INTERVAL_SECONDS,
    describe: Callable[[], str] | None = None,
) -> T:
    """Call ``probe`` until it returns something truthy and return that.

    ``describe`` replaces the probe's last answer in the failure message (say, with the
    tail of a log)."""
    wait: _Wait[T] = _Wait(description, timeout, describe)
    while not wait.done(_attempt(probe)):
        time.sleep(interval)
    assert wait.value is not None
    return wait.value


@overload
async def wait_for_async(
    description: str,
    probe: Callable[[], Awaitable[T | None]],
    timeout: float = ...,  # noqa: ASYNC109
    interval: float = ...,
    describe: Callable[[], str] | None = ...,
) -> T: ...


@overload
async def wait_for_async(
    description: str,
    probe: Callable[[], T | None],
    timeout: float = ...,  # noqa: ASYNC109
    interval: float = ...,
    describe: Callable[[], str] | None = ...,
) -> T: ...


async def wait_for_async(
    description: str,
    probe: Callable[[], Any],
    # The same deadline as wait_for's; asyncio.timeout would lose the failure message.
    timeout: float = DEFAULT_TIMEOUT_SECONDS,  # noqa: ASYNC109
    interval: float = DEFAULT_INTERVAL_SECONDS,
    describe: Callable[[], str] | None = None,
) -> Any:
    """`wait_for` for a running event loop: sleeps without blocking it, awaits the
    probe's answer when it is awaitable."""
    wait: _Wait[Any] = _Wait(description, timeout, describe)
    # Polling, not an Event: what is awaited happens in another process or a database.
    while not wait.done(await _attempt_async(probe)):  # noqa: ASYNC110
        await asyncio.sleep(interval)
    return wait.value

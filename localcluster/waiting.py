"""Waiting for a condition, failing with what was awaited and what was seen."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """The awaited condition did not hold in time."""


def wait_for(
    description: str,
    probe: Callable[[], T | None],
    timeout: float = 60.0,
    interval: float = 0.5,
    describe: Callable[[], str] | None = None,
) -> T:
    """Call ``probe`` until it returns something truthy and return that.

    Exceptions from the probe count as "not yet" and are reported if time runs
    out; ``describe`` adds what was seen last to the failure message.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = probe()
            if value:
                return value
            last = value
        except Exception as error:
            last = f"{type(error).__name__}: {error}"
        if time.monotonic() >= deadline:
            seen = describe() if describe is not None else repr(last)
            raise WaitTimeout(
                f"timed out after {timeout:.0f}s waiting for {description}; last seen: {seen}"
            )
        time.sleep(interval)

"""Exponential backoff, the one kind used everywhere in workerfleet.

* :func:`backoff_seconds`: how long a failed job waits before its next
  attempt, between a base and a cap, with jitter so that a burst of jobs
  failing together (a dependency went down) does not come back as a burst.
  Pure: the random source is a parameter, so tests can pin it.
* :class:`Backoff`: consecutive failures of one thing (a database connection,
  a listener, the operator's reads of one database) turned into growing delays.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Literal

Jitter = Literal["full", "equal", "none"]
BACKOFF_FACTOR = 2.0
# Past this many doublings every realistic cap is reached; stop before floats overflow.
MAX_DOUBLINGS = 64


def exponential_seconds(attempt: int, base_seconds: float, cap_seconds: float) -> float:
    """base * 2^(attempt-1), capped: 1 -> base, 2 -> 2*base, ... (attempt counts from 1)."""
    doublings = min(max(attempt, 1) - 1, MAX_DOUBLINGS)
    return float(min(cap_seconds, base_seconds * BACKOFF_FACTOR**doublings))


def backoff_seconds(
    attempt: int,
    base_seconds: float,
    cap_seconds: float,
    jitter: Jitter = "equal",
    rng: Callable[[], float] = random.random,
) -> float:
    """The delay before retrying a job whose ``attempt``-th run just failed.

    - ``none``: the exponential value itself.
    - ``equal``: half of it fixed, half random (never shorter than half the step).
    - ``full``: uniformly random up to it.
    The result always lies between ``base_seconds`` and ``cap_seconds``.
    """
    if base_seconds < 0 or cap_seconds < 0:
        raise ValueError("backoff base and cap must not be negative")
    ceiling = exponential_seconds(attempt, base_seconds, cap_seconds)
    if jitter == "none":
        delay = ceiling
    elif jitter == "equal":
        delay = ceiling / 2 + rng() * ceiling / 2
    elif jitter == "full":
        delay = rng() * ceiling
    else:
        raise ValueError(f"unknown jitter mode {jitter!r}: use full, equal or none")
    return min(max(delay, min(base_seconds, cap_seconds)), cap_seconds)


class Backoff:
    """Delays after consecutive failures: initial, 2 x initial, ... up to cap; reset on success."""

    def __init__(self, initial_seconds: float, cap_seconds: float) -> None:
        self.initial_seconds = initial_seconds
        self.cap_seconds = cap_seconds
        self.failures = 0

    def next_delay(self) -> float:
        """Count one more failure and return how long to wait before trying again."""
        self.failures += 1
        return exponential_seconds(self.failures, self.initial_seconds, self.cap_seconds)

    def reset(self) -> None:
        self.failures = 0

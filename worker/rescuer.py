"""The workers' fallback rescue: expired leases go back to the queue even when no
Monitor runs (a queue used outside Kubernetes, or the operator down).

Every ``WORKERFLEET_RESCUE_INTERVAL`` (30 s by default, with jitter so a fleet
started together spreads out), each worker tries; one per database at a time
gets the transaction-level advisory lock, the others skip that round. The
rescue is the Monitor's own SQL (a first rescue keeps the job's place in line,
a repeated one backs off), followed by folding the depth counters of backends
that have gone.

A worker rescues only once it has reached the database without a failure for
a whole lease: right after an outage every live worker's heartbeat first gets
the chance to extend the leases it holds, so a job whose worker is alive is
not taken from it just because the database was away.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

from workerfleet.worker import connector
from workerfleet.worker.health import RuntimeState
from workerfleet.worker.logging_setup import LOGGER_NAME
from workerfleet.worker.metrics import WorkerMetrics
from workerfleet.worker.models import RescueResult
from workerfleet.worker.repository import Repository

# Each round waits the interval times a factor in this range, drawn anew.
JITTER_LOW = 0.8
JITTER_HIGH = 1.2
# A pass that hangs longer than this is abandoned (the next round tries again).
PASS_TIMEOUT_SECONDS = 30.0

log = logging.getLogger(LOGGER_NAME + ".rescuer")


def first_delay(interval_seconds: float, rng: Callable[[], float]) -> float:
    """Somewhere in the first interval, so workers started together do not all try at once."""
    return interval_seconds * rng()


def next_delay(interval_seconds: float, rng: Callable[[], float]) -> float:
    return interval_seconds * (JITTER_LOW + (JITTER_HIGH - JITTER_LOW) * rng())


def may_rescue(state: RuntimeState, now_monotonic: float, lease_seconds: float) -> bool:
    """Running, and the database reachable without a failure for at least a lease."""
    up_since = state.database.up_since
    return (
        state.phase == "running"
        and state.database.connected is True
        and up_since is not None
        and now_monotonic - up_since >= lease_seconds
    )


class FallbackRescuer:
    def __init__(
        self,
        repository: Repository,
        state: RuntimeState,
        metrics: WorkerMetrics,
        interval_seconds: float,
        lease_seconds: float,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.repository = repository
        self.state = state
        self.metrics = metrics
        self.interval_seconds = interval_seconds
        self.lease_seconds = lease_seconds
        self.rng = rng

    async def run(self, stop: asyncio.Event) -> None:
        """A pass every interval (jittered) until ``stop`` is set."""
        delay = first_delay(self.interval_seconds, self.rng)
        while not await _stopped_within(stop, delay):
            await self.rescue_once()
            delay = next_delay(self.interval_seconds, self.rng)

    async def rescue_once(self) -> RescueResult | None:
        """One pass if this worker may run it and no other process is; what it did."""
        if not may_rescue(self.state, time.monotonic(), self.lease_seconds):
            return None
        try:
            async with asyncio.timeout(PASS_TIMEOUT_SECONDS):
                result = await self.repository.rescue_unless_another_does()
        except Exception as exc:  # the next round tries again; the heartbeat reports outages
            log.warning(
                "fallback rescue failed; trying again next round",
                extra={"error": connector.describe_error(exc)},
            )
            return None
        if result is not None and (result.rescued or result.dead):
            self.metrics.fallback_rescued.labels(outcome="pending").inc(result.rescued)
            self.metrics.fallback_rescued.labels(outcome="dead").inc(result.dead)
            log.warning(
                "fallback rescue: jobs whose lease expired were handed back",
                extra={"rescued": result.rescued, "dead_lettered": result.dead},
            )
        return result


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        return False
    return True

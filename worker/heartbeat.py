"""Every heartbeat interval: refresh the worker row and extend our jobs' leases.

The repository answers which of our running jobs we still hold; any other was
taken away (its lease expired and it was rescued, or the worker was reaped),
and the loop will drop its outcome. A database outage is survived: the beat
is tried again next interval and readiness reports the outage meanwhile.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable

from workerfleet.worker.health import JobKey, RuntimeState
from workerfleet.worker.loop import JobLoop
from workerfleet.worker.metrics import WorkerMetrics
from workerfleet.worker.models import JobRef
from workerfleet.worker.repository import Repository

# A beat that takes longer than this many intervals is abandoned and counted as failed.
BEAT_TIMEOUT_INTERVALS = 2.0
BEAT_TIMEOUT_MIN_SECONDS = 5.0


def running_refs(state: RuntimeState) -> dict[JobKey, JobRef]:
    """The jobs whose leases we extend: running here and not already known lost."""
    return {
        key: JobRef(id=job.job_id, worker_id=state.worker_id, attempt=job.attempt)
        for key, job in state.running.items()
        if key not in state.fenced_ids
    }


def lost_jobs(sent: dict[JobKey, JobRef], held_ids: set[int]) -> list[JobKey]:
    return [key for key, ref in sent.items() if ref.id not in held_ids]


class Heartbeat:
    def __init__(
        self,
        repository: Repository,
        state: RuntimeState,
        loop: JobLoop,
        metrics: WorkerMetrics,
        interval_seconds: float,
        lease_seconds: float,
        on_worker_state: Callable[[str | None], None] = lambda _state: None,
    ) -> None:
        self.repository = repository
        self.state = state
        self.loop = loop
        self.metrics = metrics
        self.interval_seconds = interval_seconds
        self.lease_seconds = lease_seconds
        self.on_worker_state = on_worker_state
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Beat now rather than at the end of the interval (the worker's row changed)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Beat every interval until ``stop`` is set (it keeps going while draining)."""
        while not stop.is_set():
            self._wake.clear()
            await self.beat()
            waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())}
            try:
                await asyncio.wait(
                    waiters, timeout=self.interval_seconds, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for waiter in waiters:
                    waiter.cancel()

    async def beat(self) -> bool:
        self.state.last_heartbeat_tick = time.monotonic()
        sent = running_refs(self.state)
        counts = self.state.counts
        timeout = max(BEAT_TIMEOUT_INTERVALS * self.interval_seconds, BEAT_TIMEOUT_MIN_SECONDS)
        try:
            async with asyncio.timeout(timeout):
                result = await self.repository.beat(
                    self.state.worker_id,
                    list(sent.values()),
                    self.lease_seconds,
                    len(self.state.running),
                    counts.succeeded,
                    counts.failed,
                )
        except Exception as exc:  # the heartbeat must outlive any database trouble
            self.loop.record_database_failure("heartbeat", exc)  # logs what is worth it
            return False
        now = time.monotonic()
        self.state.last_heartbeat_ok = now
        self.state.last_heartbeat_at = dt.datetime.now(dt.UTC)
        self.loop.record_database_ok()
        lost = lost_jobs(sent, set(result.held))
        if lost:
            self.loop.note_fenced(lost)
        self.on_worker_state(result.worker_state)
        return True

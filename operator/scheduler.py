"""The operator's one timer: every periodic job of every WorkerPool and Monitor.

kopf gives each object a timer of its own: a task per object that wakes on its
interval and goes through kopf's handler machinery each time. At 1,000 pools
ticking every second that machinery alone took about a third of a core, and a
timer of an object deleted without kopf's finalizer ran on. Here one task
sleeps until the earliest due time (``due.DueTimes``) and calls ``fire`` with
the keys that are due, which must return at once (they only poke the pool's
trigger or start the Monitor's run). Objects enter and leave with the watch
events of their kind, so a deleted object is simply never due again.

Keys due within GRAIN_SECONDS of each other are fired together, so a thousand
pools on a five-second poll cost a few wake-ups a second, not a thousand.
``on_wake`` runs at every wake-up (the liveness tick), and the task wakes at
least every MAX_SLEEP_SECONDS for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Hashable

from workerfleet.operator.due import DueTimes

GRAIN_SECONDS = 0.05
MAX_SLEEP_SECONDS = 5.0

log = logging.getLogger(__name__)

Fire = Callable[[Hashable], None]


class Scheduler:
    def __init__(
        self,
        fire: Fire,
        on_wake: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        grain_seconds: float = GRAIN_SECONDS,
        max_sleep_seconds: float = MAX_SLEEP_SECONDS,
    ) -> None:
        self._fire = fire
        self._on_wake = on_wake
        self._clock = clock
        self._grain = grain_seconds
        self._max_sleep = max_sleep_seconds
        self._due = DueTimes()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.fired = 0
        """Keys fired since start (for the tests and the benchmark)."""

    def set(self, key: Hashable, when: float) -> None:
        """``key`` is next due at ``when`` (monotonic), whatever it was due at before."""
        self._due.set(key, when)
        self._poke_if_first(when)

    def earliest(self, key: Hashable, when: float) -> None:
        """``key`` is due at ``when`` at the latest."""
        self._due.earliest(key, when)
        self._poke_if_first(when)

    def remove(self, key: Hashable) -> None:
        self._due.remove(key)

    def when(self, key: Hashable) -> float | None:
        return self._due.when(key)

    def __contains__(self, key: object) -> bool:
        return key in self._due

    def __len__(self) -> int:
        return len(self._due)

    def start(self) -> None:
        """Start the loop on the running event loop (again after close); idempotent."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="scheduler")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _poke_if_first(self, when: float) -> None:
        first = self._due.next_at()
        if first is not None and when <= first:
            self._wakeup.set()

    async def _run(self) -> None:
        while True:
            self._wakeup.clear()
            now = self._clock()
            for key in self._due.pop_due(now + self._grain):
                self.fired += 1
                try:
                    self._fire(key)
                except Exception:  # one object's bug must not stop every other's timer
                    log.exception("a scheduled job failed to start", extra={"key": str(key)})
            try:
                self._on_wake()
            except Exception:
                log.exception("the scheduler's wake-up hook failed")
            first = self._due.next_at()
            delay = self._max_sleep if first is None else min(first - now, self._max_sleep)
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wakeup.wait()

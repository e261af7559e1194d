"""Is the operator still watching? A liveness verdict kopf's own probe cannot give.

kopf's liveness endpoint answers as long as the process runs, even when a watch
stream went silent (the connection is up, nothing arrives). Two signals catch
that here:

* timer ticks: each WorkerPool's status timer ticks every few seconds; when
  pools exist and no tick happened for ``tick_stale_seconds``, the reactor is
  stuck;
* write-then-observe: a status the operator wrote must come back through the
  WorkerPool watch. A write that stays unobserved for ``watch_silence_seconds``
  means the watch is silent although the API server took the write.

Pure bookkeeping with an injected clock; ``health.py`` serves the verdict.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from workerfleet.operator import metrics


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str


def digest(status: Mapping[str, Any], keys: Iterable[str]) -> str:
    subset = {key: status.get(key) for key in sorted(keys)}
    return hashlib.sha256(json.dumps(subset, sort_keys=True).encode()).hexdigest()


@dataclass
class _Unobserved:
    digest: str
    keys: frozenset[str]
    since: float


class Activity:
    def __init__(
        self,
        *,
        tick_stale_seconds: float,
        watch_silence_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.tick_stale_seconds = tick_stale_seconds
        self.watch_silence_seconds = watch_silence_seconds
        self._clock = clock
        self._wall_clock = wall_clock
        self.started = clock()
        self.last_event: float | None = None
        self.last_tick: float | None = None
        self._unobserved: dict[str, _Unobserved] = {}
        self._known: set[str] = set()

    def event(self, key: str | None = None) -> None:
        """A watch event; ``key`` names a WorkerPool or Monitor that exists."""
        self.last_event = self._clock()
        if key is not None:
            self._known.add(key)
        metrics.LAST_ACTIVITY.set(self._wall_clock())

    def gone(self, key: str) -> None:
        self._known.discard(key)
        self._unobserved.pop(key, None)

    def tick(self) -> None:
        self.last_tick = self._clock()
        metrics.LAST_ACTIVITY.set(self._wall_clock())

    def wrote(self, key: str, status: Mapping[str, Any]) -> None:
        """``status`` was sent for ``key``; it must come back through the watch.

        Only the first unobserved write's time counts: a silent watch makes every
        tick write again, and those rewrites must not restart the clock.
        """
        keys = frozenset(status)
        pending = self._unobserved.get(key)
        since = pending.since if pending is not None else self._clock()
        self._unobserved[key] = _Unobserved(digest(status, keys), keys, since)

    def observed(self, key: str, status: Mapping[str, Any]) -> None:
        """The watch delivered ``key`` with ``status``."""
        pending = self._unobserved.get(key)
        if pending is not None and digest(status, pending.keys) == pending.digest:
            del self._unobserved[key]

    @property
    def known(self) -> int:
        return len(self._known)

    def verdict(self) -> Verdict:
        now = self._clock()
        for key, pending in self._unobserved.items():
            silent = now - pending.since
            if silent > self.watch_silence_seconds:
                return Verdict(
                    False,
                    f"status of {key} written {silent:.0f}s ago has not come back through the "
                    "watch: the watch stream is silent",
                )
        if self._known:
            last = self.last_tick if self.last_tick is not None else self.started
            if now - last > self.tick_stale_seconds:
                return Verdict(
                    False,
                    f"no timer tick for {now - last:.0f}s while {len(self._known)} objects exist",
                )
        return Verdict(True, f"watching {len(self._known)} objects")

"""When each of many keys is next due: a heap with one live entry per key.

The operator's scheduler keeps one due time per WorkerPool and per Monitor here
(instead of a kopf timer per object). Setting a key again replaces its time;
the entry it replaces stays in the heap, marked stale by a version number, and
is skipped when it surfaces, so every operation is O(log n) whatever the number
of keys. Pure: the caller passes the times.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable


class DueTimes:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Hashable]] = []
        self._live: dict[Hashable, tuple[float, int]] = {}
        self._versions = itertools.count()

    def set(self, key: Hashable, when: float) -> None:
        """``key`` is due at ``when`` (replacing any earlier or later time)."""
        version = next(self._versions)
        self._live[key] = (when, version)
        heapq.heappush(self._heap, (when, version, key))
        self._compact()

    def earliest(self, key: Hashable, when: float) -> None:
        """``key`` is due at ``when`` unless it is due sooner already."""
        current = self._live.get(key)
        if current is None or when < current[0]:
            self.set(key, when)

    def remove(self, key: Hashable) -> None:
        self._live.pop(key, None)
        self._compact()

    def when(self, key: Hashable) -> float | None:
        current = self._live.get(key)
        return None if current is None else current[0]

    def next_at(self) -> float | None:
        """The earliest due time of any key, or None when no key is due ever."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[Hashable]:
        """The keys due at ``now``, earliest first; they are no longer due afterwards."""
        due: list[Hashable] = []
        while True:
            self._drop_stale()
            if not self._heap or self._heap[0][0] > now:
                return due
            _, _, key = heapq.heappop(self._heap)
            del self._live[key]
            due.append(key)

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: object) -> bool:
        return key in self._live

    def _drop_stale(self) -> None:
        while self._heap:
            when, version, key = self._heap[0]
            if self._live.get(key) == (when, version):
                return
            heapq.heappop(self._heap)

    def _compact(self) -> None:
        """Rebuild the heap once stale entries outnumber live ones (keys re-set often)."""
        if len(self._heap) > 2 * len(self._live) + 64:
            self._heap = [(when, version, key) for key, (when, version) in self._live.items()]
            heapq.heapify(self._heap)

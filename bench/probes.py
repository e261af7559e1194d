"""Enqueue -> start latency, measured the same way for every queue (standard library only).

A ``probe`` job appends ``<seq> <unix time>`` to a file the moment its handler
starts. The loop enqueues one probe at a time on an idle worker, waits for its
line, rests, and repeats; latency = handler start - the moment before enqueue.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

PROBE_POLL_SECONDS = 0.001
PROBE_TIMEOUT_SECONDS = 10.0
IDLE_BETWEEN_PROBES_SECONDS = 0.02


class ProbeReader:
    """Reads the probe file incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.seen: dict[int, float] = {}

    def poll(self) -> None:
        if not self.path.exists():
            return
        with self.path.open() as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        complete, _, _ = chunk.rpartition("\n")
        if not complete:
            return
        self.offset += len(complete) + 1
        for line in complete.splitlines():
            number, started = line.split()
            self.seen[int(number)] = float(started)

    async def wait_for(self, seq: int) -> float:
        deadline = time.monotonic() + PROBE_TIMEOUT_SECONDS
        while True:
            self.poll()
            if seq in self.seen:
                return self.seen[seq]
            if time.monotonic() > deadline:
                raise TimeoutError(f"probe {seq} did not start within {PROBE_TIMEOUT_SECONDS}s")
            await asyncio.sleep(PROBE_POLL_SECONDS)


async def latency_loop(
    samples: int, probe_file: Path, enqueue_probe: Callable[[int], Awaitable[object]]
) -> list[float]:
    """Milliseconds from just before each enqueue to its handler's start."""
    reader = ProbeReader(probe_file)
    latencies = []
    for seq in range(samples):
        before = time.time()
        await enqueue_probe(seq)
        started = await reader.wait_for(seq)
        latencies.append((started - before) * 1000)
        await asyncio.sleep(IDLE_BETWEEN_PROBES_SECONDS)
    return latencies

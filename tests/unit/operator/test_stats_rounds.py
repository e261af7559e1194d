"""Stats rounds: one snapshot per round serves every pool on the database; only the pools
whose figures changed are poked."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from dataclasses import replace
from typing import Any, cast

from localcluster.waiting import wait_for_async
from workerfleet.operator.errors import QueueAccessError
from workerfleet.operator.inspector import QueueInspector, Snapshot
from workerfleet.operator.stats_rounds import StatsRounds
from workerfleet.worker.models import QueueStats, WorkerStats

DSN = "postgresql://u@db/a"


def stats(queue: str, pending: int = 0) -> QueueStats:
    return QueueStats(queue, pending, 0, 0, 0, 0, 0, None, 0)


def snapshot(**pending: int) -> Snapshot:
    return Snapshot(
        queues={q: stats(q, n) for q, n in pending.items()},
        workers={f"ns/{q}": WorkerStats(f"ns/{q}", 0, 0, 0, 0, 0) for q in pending},
        taken_at=0.0,
    )


class FedInspector:
    """Hands out the snapshots (or errors) the test feeds, one per round, and counts."""

    def __init__(self) -> None:
        self.fed: asyncio.Queue[Snapshot | QueueAccessError] = asyncio.Queue()
        self.calls = 0

    async def snapshot(self, dsn: str, newer_than: float | None = None) -> Snapshot:
        found = await self.fed.get()
        self.calls += 1
        if isinstance(found, QueueAccessError):
            raise found
        return found


async def test_one_snapshot_per_round_and_only_changed_pools_are_poked() -> None:
    inspector = FedInspector()
    poked: list[tuple[Hashable, str]] = []
    rounds = StatsRounds(
        cast(QueueInspector, inspector), lambda k, c: poked.append((k, c)), round_seconds=0.0
    )
    first = snapshot(a=0, b=0, c=0)
    for queue in ("a", "b", "c"):
        seen = (first.queues[queue], first.workers[f"ns/{queue}"])
        rounds.attach(queue, DSN, queue, f"ns/{queue}", seen)

    async def round_with(found: Snapshot | QueueAccessError) -> None:
        done = rounds.rounds(DSN)
        await inspector.fed.put(found)
        await wait_for_async("the round", lambda: rounds.rounds(DSN) > done, 5, 0.001)

    await round_with(first)
    assert poked == []  # nothing changed since the pools' own syncs
    await round_with(snapshot(a=0, b=7, c=0))
    assert poked == [("b", "counts")]
    down = QueueAccessError("DatabaseUnreachable", "connection refused")
    await round_with(down)
    await round_with(down)
    assert sorted(poked[1:]) == [("a", "counts"), ("b", "counts"), ("c", "counts")]
    await round_with(snapshot(a=0, b=7, c=0))
    assert len(poked) == 7  # back: each pool once more
    assert inspector.calls == rounds.rounds(DSN) == 5  # one snapshot per round, three pools
    await rounds.close()


async def feed(
    rounds: StatsRounds, inspector: FedInspector, found: Snapshot | QueueAccessError
) -> None:
    done = rounds.rounds(DSN)
    await inspector.fed.put(found)
    await wait_for_async("the round", lambda: rounds.rounds(DSN) > done, 5, 0.001)


async def test_the_clock_alone_pokes_a_pool_now_and_then() -> None:
    inspector = FedInspector()
    poked: list[tuple[Hashable, str]] = []
    now = [100.0]
    rounds = StatsRounds(
        cast(QueueInspector, inspector),
        lambda k, c: poked.append((k, c)),
        round_seconds=0.0,
        clock=lambda: now[0],
    )
    base = snapshot(a=3)
    rounds.attach("a", DSN, "a", "ns/a", (base.queues["a"], base.workers["ns/a"]))
    for age, at in ((1.0, 101.0), (2.0, 102.0), (15.0, 115.0), (16.0, 116.0)):
        now[0] = at
        aged = replace(base, queues={"a": replace(base.queues["a"], oldest_pending_seconds=age)})
        await feed(rounds, inspector, aged)
    # The first clock-only change refreshes; the next within CLOCK_REFRESH_SECONDS do not.
    assert poked == [("a", "clock"), ("a", "clock")]
    await rounds.close()


async def test_the_last_pool_leaving_stops_the_databases_round() -> None:
    inspector = FedInspector()
    rounds = StatsRounds(cast(QueueInspector, inspector), lambda k, c: None, round_seconds=0.0)
    rounds.attach("a", DSN, "a", "ns/a")
    rounds.attach("b", DSN, "b", "ns/b")
    rounds.attach("c", "postgresql://u@db/other", "c", "ns/c")
    assert rounds.databases == 2
    rounds.detach("a")
    assert rounds.databases == 2
    rounds.detach("b")
    rounds.detach("never attached")
    assert rounds.databases == 1
    # Moving to another database leaves the old one.
    rounds.attach("c", DSN, "c", "ns/c")
    assert rounds.databases == 1
    tasks: list[Any] = [t for t in asyncio.all_tasks() if t.get_name() == "stats rounds"]
    await rounds.close()
    assert all(t.cancelled() or t.done() for t in tasks)


async def test_a_database_read_by_its_rounds_covers_its_pools_until_it_fails() -> None:
    inspector = FedInspector()
    now = [100.0]
    rounds = StatsRounds(
        cast(QueueInspector, inspector), lambda k, c: None, round_seconds=1.0,
        clock=lambda: now[0],
    )  # fmt: skip
    rounds.attach("a", DSN, "a", "ns/a")
    assert not rounds.covers("a", now[0])  # no round has read the database yet
    await feed(rounds, inspector, snapshot(a=0))
    assert rounds.covers("a", now[0])
    assert not rounds.covers("never attached", now[0])
    assert not rounds.covers("a", now[0] + 3.5)  # a stalled round stops covering
    await feed(rounds, inspector, QueueAccessError("DatabaseUnreachable", "refused"))
    assert not rounds.covers("a", now[0])
    await rounds.close()

"""Concurrent batches that share unique keys, given in opposite orders.

Each batch inserts its keys one by one; a key being inserted by another open
transaction makes the insert wait for it. Two batches holding the same new keys
in opposite orders would each wait for the other: a deadlock, which the server
breaks by failing one of them. The batches must instead all succeed and agree
on one job per key.
"""

from __future__ import annotations

import asyncio
import random

from workerfleet.worker.connector import Connector
from workerfleet.worker.models import EnqueueRequest
from workerfleet.worker.repository import Repository

ROUNDS = 40
KEYS = 24
BATCHES = 4


def _batch(round_number: int, rng: random.Random) -> list[EnqueueRequest]:
    keys = [f"r{round_number}-k{n}" for n in range(KEYS)]
    rng.shuffle(keys)
    # Unkeyed jobs between the keyed ones: the path mixes both.
    return [
        request
        for key in keys
        for request in (
            EnqueueRequest("uniq", "t", {"key": key}, unique_key=key),
            EnqueueRequest("uniq", "t", {"plain": key}),
        )
    ]


async def test_batches_sharing_keys_in_any_order_never_deadlock(
    postgres_dsn: str, connector: Connector
) -> None:
    connectors = [
        await Connector.open(postgres_dsn, min_size=1, max_size=1) for _ in range(BATCHES)
    ]
    rng = random.Random(7)
    try:
        for round_number in range(ROUNDS):
            batches = [_batch(round_number, rng) for _ in range(BATCHES)]
            results = await asyncio.gather(
                *(
                    Repository(own).enqueue_many(batch)
                    for own, batch in zip(connectors, batches, strict=True)
                )
            )
            ids_by_key: dict[str, set[int]] = {}
            for batch, ids in zip(batches, results, strict=True):
                assert len(ids) == len(batch)
                for request, job_id in zip(batch, ids, strict=True):
                    if request.unique_key is not None:
                        ids_by_key.setdefault(request.unique_key, set()).add(job_id)
            assert len(ids_by_key) == KEYS
            assert all(len(ids) == 1 for ids in ids_by_key.values()), ids_by_key
    finally:
        for own in connectors:
            await own.close()

    keyed = await connector.fetchval(
        "SELECT count(*) FROM workerfleet.jobs WHERE unique_key IS NOT NULL"
    )
    plain = await connector.fetchval(
        "SELECT count(*) FROM workerfleet.jobs WHERE unique_key IS NULL"
    )
    assert (keyed, plain) == (ROUNDS * KEYS, ROUNDS * KEYS * BATCHES)

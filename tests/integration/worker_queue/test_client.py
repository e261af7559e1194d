"""The public Python enqueue API."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest

from workerfleet.worker.client import Client, enqueue_on, make_request
from workerfleet.worker.connector import Connector, DatabaseUnavailable, connect
from workerfleet.worker.models import InvalidJobError
from workerfleet.worker.repository import Repository


async def test_client_enqueues_one_and_many(connector: Connector, repo: Repository) -> None:
    async with await Client.connect(connector.dsn) as client:
        job_id = await client.enqueue(
            "emails", "send", {"to": "x"}, priority=3, delay="90s", max_attempts=2
        )
        batch = await client.enqueue_many(
            [make_request("emails", "send", {"n": n}, unique_key=f"k{n % 2}") for n in range(4)]
        )
    job = await repo.get_job(job_id)
    assert job is not None
    assert (job.priority, job.max_attempts, job.payload) == (3, 2, {"to": "x"})
    assert job.run_at - job.created_at == timedelta(seconds=90)
    assert batch[0] == batch[2]
    assert batch[1] == batch[3]
    assert batch[0] != batch[1]


async def test_client_refuses_bad_input_naming_the_field(connector: Connector) -> None:
    async with await Client.connect(connector.dsn) as client:
        with pytest.raises(InvalidJobError) as bad_delay:
            await client.enqueue("emails", "send", delay="soon")
        assert bad_delay.value.field == "delay"
        with pytest.raises(InvalidJobError) as bad_queue:
            await client.enqueue("Emails!", "send")
        assert bad_queue.value.field == "queue"
        with pytest.raises(InvalidJobError) as bad_payload:
            await client.enqueue("emails", "send", {"body": "nul\x00"})
        assert bad_payload.value.field == "payload"
    connection = await asyncpg.connect(connector.dsn)
    try:
        with pytest.raises(InvalidJobError) as on_connection:
            await enqueue_on(connection, make_request("orders", "ship", [float("nan")]))
        assert on_connection.value.field == "payload"
    finally:
        await connection.close()


async def test_enqueue_on_follows_the_callers_transaction(
    connector: Connector, repo: Repository
) -> None:
    for codec in (False, True):
        connection = await connect(connector.dsn) if codec else await asyncpg.connect(connector.dsn)
        try:
            async with connection.transaction():
                kept = await enqueue_on(connection, make_request("orders", "ship", [1, 2]))
            transaction = connection.transaction()
            await transaction.start()
            await enqueue_on(connection, make_request("orders", "ship", {"lost": True}))
            await transaction.rollback()
        finally:
            await connection.close()
        job = await repo.get_job(kept)
        assert job is not None
        assert job.payload == [1, 2]
    assert len(await repo.list_jobs(queue="orders")) == 2


async def test_connecting_to_nothing_is_a_clear_error() -> None:
    with pytest.raises(DatabaseUnavailable, match=r"postgresql://u:\*\*\*@127\.0\.0\.1:1/db"):
        await Client.connect("postgresql://u:secret@127.0.0.1:1/db")

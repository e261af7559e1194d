"""The public Python API for putting work on a workerfleet queue.

    async with await Client.connect(dsn) as client:
        job_id = await client.enqueue("emails", "send_welcome", {"user": 42}, delay="5m")

``enqueue_on`` enqueues on a connection you already hold, inside your own
transaction: the job exists if and only if your transaction commits.
Any other language can call the SQL function ``workerfleet.enqueue(...)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from workerfleet.durations import DurationError, parse_duration
from workerfleet.worker import tracing
from workerfleet.worker.connector import Connector
from workerfleet.worker.json_values import jsonb_text
from workerfleet.worker.models import EnqueueRequest, InvalidJobError
from workerfleet.worker.queries import QUERIES
from workerfleet.worker.repository import Repository

__all__ = ["Client", "EnqueueRequest", "InvalidJobError", "enqueue_on", "make_request"]

CLIENT_POOL_MAX_SIZE = 5


def make_request(
    queue: str,
    task: str,
    payload: Any = None,
    *,
    priority: int = 0,
    run_at: datetime | None = None,
    delay: float | str | None = None,
    max_attempts: int | None = None,
    unique_key: str | None = None,
) -> EnqueueRequest:
    """A validated request; ``delay`` is seconds or a duration such as ``"90s"``."""
    delay_seconds: float | None = None
    if delay is not None:
        try:
            delay_seconds = parse_duration(delay)
        except DurationError as error:
            raise InvalidJobError("delay", str(error)) from error
    return EnqueueRequest(
        queue, task, payload, priority, run_at, delay_seconds, max_attempts, unique_key
    )


class Client:
    """Enqueue jobs; holds a small pool (or borrows a :class:`Connector`)."""

    def __init__(self, connector: Connector, *, owns_connector: bool = False) -> None:
        self.connector = connector
        self._repository = Repository(connector)
        self._owns_connector = owns_connector

    @classmethod
    async def connect(cls, dsn: str, *, max_size: int = CLIENT_POOL_MAX_SIZE) -> Client:
        connector = await Connector.open(dsn, min_size=1, max_size=max_size)
        return cls(connector, owns_connector=True)

    async def enqueue(
        self,
        queue: str,
        task: str,
        payload: Any = None,
        *,
        priority: int = 0,
        run_at: datetime | None = None,
        delay: float | str | None = None,
        max_attempts: int | None = None,
        unique_key: str | None = None,
    ) -> int:
        """The new job's id (or the live job's id when ``unique_key`` is taken)."""
        request = make_request(
            queue,
            task,
            payload,
            priority=priority,
            run_at=run_at,
            delay=delay,
            max_attempts=max_attempts,
            unique_key=unique_key,
        )
        return (await self._repository.enqueue_many([request]))[0]

    async def enqueue_many(self, requests: Sequence[EnqueueRequest]) -> list[int]:
        """One statement for the whole batch; ids in the order given."""
        return await self._repository.enqueue_many(requests)

    async def close(self) -> None:
        if self._owns_connector:
            await self.connector.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def enqueue_on(connection: asyncpg.Connection, request: EnqueueRequest) -> int:
    """Enqueue on ``connection`` (e.g. inside your transaction); returns the id."""
    return int(
        await connection.fetchval(
            QUERIES["enqueue_on_connection"],
            request.queue,
            request.task,
            jsonb_text(request.payload, "payload"),
            request.priority,
            request.run_at,
            request.max_attempts,
            request.unique_key,
            request.delay_seconds,
            jsonb_text(request.trace_context or tracing.current_carrier(), "trace_context"),
        )
    )

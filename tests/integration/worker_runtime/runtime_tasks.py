"""Tasks for the runtime's integration tests, loaded by real worker processes.

Every run of ``record`` and ``slow_record`` inserts one row into
``runtime_test.side_effects``, so a test can count how often each job really
ran to the end (not just what the jobs table says).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import asyncpg

from workerfleet.worker.demo_handlers import echo, fail, noop, sleep  # re-exported tasks
from workerfleet.worker.tasks import JobContext, PermanentError, task

__all__ = ["echo", "fail", "noop", "sleep"]
DSN_VARIABLE = "RUNTIME_TEST_DSN"
# One table per test database, created by the test before workers start.
SIDE_EFFECTS_DDL = (
    "CREATE SCHEMA IF NOT EXISTS runtime_test; "
    "CREATE TABLE IF NOT EXISTS runtime_test.side_effects ("
    " job_id bigint NOT NULL, attempt int NOT NULL, worker_id text NOT NULL,"
    " at timestamptz NOT NULL DEFAULT clock_timestamp())"
)
_pool: asyncpg.Pool | None = None


async def _side_effects_pool() -> asyncpg.Pool:
    global _pool
    if _pool is None:
        _pool = await asyncpg.create_pool(os.environ[DSN_VARIABLE], min_size=1, max_size=4)
    return _pool


async def _record(ctx: JobContext) -> None:
    pool = await _side_effects_pool()
    await pool.execute(
        "INSERT INTO runtime_test.side_effects (job_id, attempt, worker_id) VALUES ($1, $2, $3)",
        ctx.job_id,
        ctx.attempt,
        ctx.worker_id,
    )


@task()
async def record(ctx: JobContext, payload: Any) -> Any:
    await _record(ctx)
    return payload


@task()
async def slow_record(ctx: JobContext, payload: Any) -> Any:
    await asyncio.sleep(float(payload["seconds"]))
    await _record(ctx)
    return payload


@task(timeout="300ms")
async def too_slow(ctx: JobContext, payload: Any) -> None:
    await asyncio.sleep(30)


@task()
async def refuse(ctx: JobContext, payload: Any) -> None:
    raise PermanentError(f"payload {payload!r} can never work")

"""Tasks for the runtime's integration tests, loaded by real worker processes.

Every run of ``record``, ``slow_record`` and ``flaky_record`` inserts one row
into ``runtime_test.side_effects``, so a test can count how often each job
really ran (not just what the jobs table says). ``file_record`` appends a line
to the file named by ``$RUNTIME_TEST_EFFECTS_FILE`` instead, for tests that
stop the database under the workers.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import asyncpg

from workerfleet.worker.demo_handlers import echo, fail, noop, sleep  # re-exported tasks
from workerfleet.worker.tasks import JobContext, PermanentError, task

__all__ = ["echo", "fail", "noop", "sleep"]
DSN_VARIABLE = "RUNTIME_TEST_DSN"
EFFECTS_FILE_VARIABLE = "RUNTIME_TEST_EFFECTS_FILE"
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


@task()
async def flaky_record(ctx: JobContext, payload: Any) -> Any:
    """Fails its first attempt (after recording the run), succeeds after."""
    await _record(ctx)
    if ctx.attempt == 1:
        raise RuntimeError("the first attempt fails on purpose")
    return payload


@task()
def file_record(ctx: JobContext, payload: Any) -> Any:
    """Sleeps ``seconds`` (default 0), then appends ``job_id attempt worker_id``
    (a sync task: it runs in the worker's thread pool)."""
    time.sleep(float((payload or {}).get("seconds", 0)))
    line = f"{ctx.job_id} {ctx.attempt} {ctx.worker_id}\n"
    # One short O_APPEND write: lines of concurrent workers never interleave.
    with open(os.environ[EFFECTS_FILE_VARIABLE], "a", encoding="utf-8") as effects:
        effects.write(line)
    return payload


@task(timeout="300ms")
async def too_slow(ctx: JobContext, payload: Any) -> None:
    await asyncio.sleep(30)


@task()
async def refuse(ctx: JobContext, payload: Any) -> None:
    raise PermanentError(f"payload {payload!r} can never work")


@task()
async def unstorable_result(ctx: JobContext, payload: Any) -> Any:
    """A result jsonb refuses: a NUL character (``"nul"``) or NaN (``"nan"``)."""
    return {"text": "a\x00b"} if payload == "nul" else [float("nan")]

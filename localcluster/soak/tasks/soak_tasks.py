"""The soak's task, run by the worker pods (`WORKERFLEET_HANDLERS=soak_tasks`).

``record`` writes its execution to ``soak.executions`` before doing its work, so every
run of every job is on record, the ones cut short by a kill included.

The pods import this module from its own directory (PYTHONPATH): the checkout's root
cannot go on their path, its ``operator/`` would shadow the standard library's.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import asyncpg

from workerfleet.worker.queries import parse_queries
from workerfleet.worker.tasks import JobContext, task

SOAK_SQL = Path(__file__).resolve().parents[1] / "soak.sql"
RECORD_EXECUTION = parse_queries(SOAK_SQL.read_text())["record_execution"]
DSN_VARIABLE = "WORKERFLEET_DSN"
POOL_SIZE = 4
DEFAULT_SECONDS = 0.3

_pool: asyncpg.Pool | None = None
_pool_lock = asyncio.Lock()


async def _connections() -> asyncpg.Pool:
    global _pool
    async with _pool_lock:
        if _pool is None:
            _pool = await asyncpg.create_pool(
                os.environ[DSN_VARIABLE], min_size=1, max_size=POOL_SIZE
            )
        return _pool


@task()
async def record(ctx: JobContext, payload: Any) -> None:
    pool = await _connections()
    await pool.execute(RECORD_EXECUTION, ctx.job_id, ctx.attempt, ctx.worker_id)
    seconds = payload.get("seconds", DEFAULT_SECONDS) if isinstance(payload, dict) else None
    await asyncio.sleep(float(seconds or DEFAULT_SECONDS))

"""Supervision, in process: a side task that dies stops the worker (non-zero exit)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from localcluster.loopback import free_port
from workerfleet.worker import handlers, main
from workerfleet.worker.config import load_settings
from workerfleet.worker.listener import Listener


async def test_a_dying_side_task_drains_and_exits_non_zero(
    queue_dsn: str, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def explode(self: Listener, stop: asyncio.Event) -> None:
        await asyncio.sleep(0.5)
        raise RuntimeError("listener exploded")

    monkeypatch.setattr(Listener, "run", explode)
    settings = load_settings(
        {
            "WORKERFLEET_DSN": queue_dsn,
            "WORKERFLEET_QUEUES": "runtime",
            "WORKERFLEET_HANDLERS": "workerfleet.worker.demo_handlers",
            "WORKERFLEET_HEALTH_HOST": "127.0.0.1",
            "WORKERFLEET_HEALTH_PORT": str(free_port()),
            "WORKERFLEET_HEARTBEAT_INTERVAL": "200ms",
            "WORKERFLEET_POLL_INTERVAL": "100ms",
        }
    )
    process = main.WorkerProcess(settings, handlers.load_handler(settings.handlers))
    exit_code = await asyncio.wait_for(process.run(), timeout=60)
    assert exit_code == main.EXIT_FAILED
    assert process.state.phase == "stopped"
    state = await db.fetchval(
        "SELECT state FROM workerfleet.workers WHERE id = $1", process.state.worker_id
    )
    assert state == "offline"

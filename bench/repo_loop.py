"""A bare claim/complete loop on the Repository: the queue's own ceiling, without
the worker runtime (no handlers, metrics or heartbeats). Prints ``ready``, then
processes jobs of the ``bench`` queue with N slots until SIGTERM.

    repo_loop.py DSN CONCURRENCY
"""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid

from workerfleet.worker.connector import Connector
from workerfleet.worker.models import Job
from workerfleet.worker.repository import Repository

LEASE_SECONDS = 30.0
IDLE_SLEEP_SECONDS = 0.05


async def main(dsn: str, concurrency: int) -> None:
    connector = await Connector.open(dsn, min_size=2, max_size=concurrency + 1)
    repo = Repository(connector)
    worker_id = f"repo-loop-{uuid.uuid4().hex[:8]}"
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)

    async def finish(job: Job) -> None:
        await repo.complete(job.ref, None)

    while not stop.is_set():
        jobs = await repo.claim(worker_id, ["bench"], concurrency, LEASE_SECONDS)
        if not jobs:
            await asyncio.sleep(IDLE_SLEEP_SECONDS)
            continue
        await asyncio.gather(*(finish(job) for job in jobs))
    await connector.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))

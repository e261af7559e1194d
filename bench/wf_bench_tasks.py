"""Tasks the benchmark runs on ``workerfleet-worker`` (WORKERFLEET_HANDLERS=wf_bench_tasks).

``noop`` does nothing; ``probe`` appends ``<seq> <unix time>`` to $BENCH_PROBE_FILE
the moment it starts, so enqueue -> start latency is measured the same way for
every queue in the benchmark.
"""

from __future__ import annotations

import os
import time
from typing import Any

from workerfleet.worker.tasks import JobContext, task

_PROBE_PATH = os.environ.get("BENCH_PROBE_FILE")
_probe_file = open(_PROBE_PATH, "a", buffering=1) if _PROBE_PATH else None  # noqa: SIM115


@task()
async def noop(ctx: JobContext, payload: Any) -> None:
    return None


@task()
async def probe(ctx: JobContext, payload: Any) -> None:
    started = time.time()
    if _probe_file is not None:
        _probe_file.write(f"{payload['seq']} {started}\n")

"""Demo tasks for trying workerfleet out: ``WORKERFLEET_HANDLERS=workerfleet.worker.demo_handlers``.

- ``sleep``  {"seconds": 1.5}               waits without using a CPU
- ``echo``   any payload                    returns the payload as the result
- ``fail``   {"rate": 0.3, "message": "x"}  fails with that probability (default always)
- ``cpu``    {"iterations": n} or {"seconds": x}  burns a CPU in a thread
- ``noop``   anything                       does nothing (for throughput measurements)
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from typing import Any

from workerfleet.worker.tasks import JobContext, task

DEFAULT_CPU_ITERATIONS = 100_000


def _number(payload: Any, key: str, default: float) -> float:
    if payload is None:
        return default
    if not isinstance(payload, dict):
        raise ValueError(f"payload must be a JSON object, got {type(payload).__name__}")
    value = payload.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"payload field {key!r} must be a non-negative number, got {value!r}")
    return float(value)


@task()
async def sleep(ctx: JobContext, payload: Any) -> dict[str, float]:
    seconds = _number(payload, "seconds", 1.0)
    ctx.logger.debug("sleeping", extra={"seconds": seconds})
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@task()
async def echo(ctx: JobContext, payload: Any) -> Any:
    return payload


@task()
async def noop(ctx: JobContext, payload: Any) -> None:
    return None


@task()
async def fail(ctx: JobContext, payload: Any) -> dict[str, str]:
    rate = _number(payload, "rate", 1.0)
    if rate > 1:
        raise ValueError(f"payload field 'rate' must be between 0 and 1, got {rate}")
    message = payload.get("message", "demo failure") if isinstance(payload, dict) else None
    if random.random() < rate:
        raise RuntimeError(f"{message or 'demo failure'} (attempt {ctx.attempt})")
    return {"survived": f"attempt {ctx.attempt}"}


@task()
def cpu(ctx: JobContext, payload: Any) -> dict[str, float]:
    seconds = _number(payload, "seconds", 0.0)
    iterations = int(_number(payload, "iterations", 0 if seconds else DEFAULT_CPU_ITERATIONS))
    digest = b"workerfleet"
    done = 0
    started = time.monotonic()
    while done < iterations or (seconds and time.monotonic() - started < seconds):
        digest = hashlib.sha256(digest).digest()
        done += 1
    return {"iterations": done, "seconds": round(time.monotonic() - started, 6)}

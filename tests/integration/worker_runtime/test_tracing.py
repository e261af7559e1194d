"""OpenTelemetry tracing of jobs with the SDK's in-memory exporter: the enqueuer's context
goes into the job's column, each attempt runs in a span of the same trace with the job's
attributes, failures are recorded as errors, command handlers get TRACEPARENT. And a
worker that does not trace never imports OpenTelemetry. Real PostgreSQL, workers run
in-process (the spans are exported in this process)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from localcluster.loopback import free_port
from localcluster.waiting import wait_for_async
from workerfleet.worker import config, handlers, tasks
from workerfleet.worker.client import Client
from workerfleet.worker.main import WorkerProcess
from workerfleet.worker.repository import Repository

QUEUE = "traced"
EXPORTER = InMemorySpanExporter()


@tasks.task()
async def ok(ctx: tasks.JobContext, payload: Any) -> dict[str, bool]:
    return {"ok": True}


@tasks.task()
async def boom(ctx: tasks.JobContext, payload: Any) -> None:
    raise ValueError(f"boom on attempt {ctx.attempt}")


@pytest.fixture(scope="module", autouse=True)
def tracer_provider() -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)  # once per process: this module is its only user
    return provider


@pytest.fixture(autouse=True)
def clear_spans() -> None:
    EXPORTER.clear()


@pytest.fixture
async def client(queue_dsn: str) -> AsyncIterator[Client]:
    async with await Client.connect(queue_dsn) as connected:
        yield connected


async def run_worker(
    dsn: str, handler: handlers.Handler, until: Callable[[], Awaitable[bool]]
) -> None:
    settings = config.load_settings(
        {
            "WORKERFLEET_DSN": dsn,
            "WORKERFLEET_QUEUES": QUEUE,
            "WORKERFLEET_HANDLERS": "tests.traced",
            "WORKERFLEET_HEALTH_HOST": "127.0.0.1",
            "WORKERFLEET_HEALTH_PORT": str(free_port()),
            "WORKERFLEET_POLL_INTERVAL": "100ms",
            "WORKERFLEET_RETRY_BASE": "10ms",
            "WORKERFLEET_RETRY_CAP": "20ms",
            "WORKERFLEET_EVENT_LOOP": "asyncio",
        }
    )
    process = WorkerProcess(settings, handler)
    running = asyncio.create_task(process.run())
    try:
        await wait_for_async("the jobs to finish", until, timeout=30)
    finally:
        process.request_stop()
        assert await running == 0


def job_spans() -> list[ReadableSpan]:
    found = [s for s in EXPORTER.get_finished_spans() if s.name.startswith("job ")]
    return sorted(found, key=lambda s: int(str((s.attributes or {}).get("job.attempt", 0))))


async def finished(repo: Repository, *job_ids: int) -> bool:
    jobs = [await repo.get_job(job_id) for job_id in job_ids]
    return all(job is not None and job.state in ("succeeded", "dead") for job in jobs)


def module_handler() -> handlers.ModuleHandler:
    registry = tasks.TaskRegistry([getattr(f, tasks.TASK_ATTRIBUTE) for f in (ok, boom)])
    return handlers.ModuleHandler(registry, "traced tasks")


async def test_a_job_continues_the_trace_it_was_enqueued_in(
    queue_dsn: str, client: Client, repository: Repository
) -> None:
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("handle request") as request:
        ok_id = await client.enqueue(QUEUE, "ok", {"order": 7})
        boom_id = await client.enqueue(QUEUE, "boom", max_attempts=2)
    context = request.get_span_context()
    job = await repository.get_job(ok_id)
    assert job is not None
    assert job.payload == {"order": 7}  # the context is in its own column, not the payload
    trace_id = f"{context.trace_id:032x}"
    assert job.trace_context["traceparent"].startswith(f"00-{trace_id}-{context.span_id:016x}")

    await run_worker(queue_dsn, module_handler(), lambda: finished(repository, ok_id, boom_id))

    spans = job_spans()
    (succeeded,) = [s for s in spans if (s.attributes or {})["job.task"] == "ok"]
    assert succeeded.context.trace_id == context.trace_id
    assert succeeded.parent is not None
    assert succeeded.parent.span_id == context.span_id
    assert [link.context.span_id for link in succeeded.links] == [context.span_id]
    assert succeeded.kind == trace.SpanKind.CONSUMER
    attributes = dict(succeeded.attributes or {})
    assert attributes["job.id"] == ok_id
    assert attributes["job.queue"] == QUEUE
    assert (attributes["job.attempt"], attributes["job.outcome"]) == (1, "succeeded")
    assert succeeded.status.status_code == trace.StatusCode.UNSET

    failed = [s for s in spans if (s.attributes or {})["job.task"] == "boom"]
    assert [(s.attributes or {})["job.attempt"] for s in failed] == [1, 2]
    assert [(s.attributes or {})["job.outcome"] for s in failed] == ["retried", "dead"]
    for span in failed:
        assert span.context.trace_id == context.trace_id
        assert span.status.status_code == trace.StatusCode.ERROR
        assert "boom on attempt" in (span.status.description or "")
        (event,) = [e for e in span.events if e.name == "exception"]
        assert (event.attributes or {})["exception.type"] == "ValueError"


async def test_a_job_enqueued_outside_a_span_starts_its_own_trace(
    queue_dsn: str, client: Client, repository: Repository
) -> None:
    job_id = await client.enqueue(QUEUE, "ok")
    job = await repository.get_job(job_id)
    assert job is not None
    assert job.trace_context is None
    await run_worker(queue_dsn, module_handler(), lambda: finished(repository, job_id))
    (span,) = job_spans()
    assert span.parent is None
    assert list(span.links) == []
    assert (span.attributes or {})["job.outcome"] == "succeeded"


async def test_a_command_handler_gets_the_attempts_traceparent(
    queue_dsn: str, client: Client, repository: Repository
) -> None:
    program = "import json, os; print(json.dumps({'tp': os.environ.get('TRACEPARENT')}))"
    handler = handlers.CommandHandler([sys.executable, "-c", program])
    with trace.get_tracer("test").start_as_current_span("enqueue") as enqueuing:
        job_id = await client.enqueue(QUEUE, "anything")
    await run_worker(queue_dsn, handler, lambda: finished(repository, job_id))
    job = await repository.get_job(job_id)
    assert job is not None
    assert job.state == "succeeded", job.last_error
    (span,) = job_spans()
    trace_id = f"{enqueuing.get_span_context().trace_id:032x}"
    version, traced, parent, _flags = job.result["tp"].split("-")
    assert (version, traced, parent) == ("00", trace_id, f"{span.context.span_id:016x}")


NO_OTEL_PROGRAM = """
import asyncio, importlib.abc, json, os, sys

attempts = []
blocked = os.environ["BLOCK_OTEL"] == "1"

class RecordOtelImports(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            attempts.append(name)
            if blocked:  # as if the extra were not installed
                raise ModuleNotFoundError(name)
        return None

sys.meta_path.insert(0, RecordOtelImports())

from localcluster.loopback import free_port
from workerfleet.worker import config, handlers, tracing
from workerfleet.worker.client import Client
from workerfleet.worker.main import WorkerProcess

async def main():
    assert tracing.configure_from_environment(os.environ) is None
    settings = config.load_settings({
        "WORKERFLEET_DSN": sys.argv[1], "WORKERFLEET_QUEUES": "plain",
        "WORKERFLEET_HANDLERS": "workerfleet.worker.demo_handlers",
        "WORKERFLEET_HEALTH_HOST": "127.0.0.1", "WORKERFLEET_HEALTH_PORT": str(free_port()),
        "WORKERFLEET_POLL_INTERVAL": "100ms", "WORKERFLEET_EVENT_LOOP": "asyncio",
    })
    process = WorkerProcess(settings, handlers.load_handler(settings.handlers))
    running = asyncio.create_task(process.run())
    async with await Client.connect(sys.argv[1]) as client:
        job_id = await client.enqueue("plain", "echo", {"n": 1})
        for _ in range(300):
            job = await client._repository.get_job(job_id)
            if job.state == "succeeded":
                break
            await asyncio.sleep(0.1)
    process.request_stop()
    await running
    loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
    print(json.dumps({"state": job.state, "attempts": attempts, "loaded": loaded}))

asyncio.run(main())
"""


@pytest.mark.parametrize("blocked", [True, False], ids=["extra-missing", "extra-installed"])
def test_a_worker_that_does_not_trace_never_imports_opentelemetry(
    queue_dsn: str, blocked: bool
) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-c", NO_OTEL_PROGRAM, queue_dsn],
        env={**environment, "BLOCK_OTEL": "1" if blocked else "0"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["state"] == "succeeded"
    assert outcome["attempts"] == []  # not even looked for
    assert outcome["loaded"] == []

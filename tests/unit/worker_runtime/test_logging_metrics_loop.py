from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import json
import logging

from prometheus_client.parser import text_string_to_metric_families

from workerfleet.worker import connector, health, heartbeat, loop, retry
from workerfleet.worker.logging_setup import bind, configure_logging
from workerfleet.worker.metrics import WorkerMetrics
from workerfleet.worker.models import Job, JobRef

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def test_json_logs_are_one_object_per_line_with_bound_fields() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    configure_logging("INFO", "json", stream)
    logger = bind(logging.getLogger("workerfleet.worker.test"), {"job_id": 5, "queue": "q"})
    logger.info("multi\nline", extra={"task": "t"})
    try:
        raise ValueError("bad")
    except ValueError:
        logger.exception("failed")
    logger.debug("hidden")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "multi\nline"
    assert (first["job_id"], first["queue"], first["task"], first["level"]) == (5, "q", "t", "INFO")
    assert "ValueError: bad" in second["exception"]
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


def test_metrics_exposition_parses_and_counts_by_queue_and_task() -> None:
    metrics = WorkerMetrics()
    metrics.count("succeeded", "emails", "send")
    metrics.count("succeeded", "emails", "send")
    metrics.count("fenced", "emails", "send")
    metrics.observe_duration("emails", "send", "succeeded", 0.2)
    metrics.bind_heartbeat_age(lambda: 1.5)
    families = {
        family.name: family
        for family in text_string_to_metric_families(metrics.exposition().decode())
    }
    succeeded = families["workerfleet_worker_jobs_succeeded"].samples
    total = [s for s in succeeded if s.name.endswith("_total")]
    assert total[0].labels == {"queue": "emails", "task": "send"}
    assert total[0].value == 2.0
    assert families["workerfleet_worker_heartbeat_age_seconds"].samples[0].value == 1.5
    assert "process_resident_memory_bytes" in families
    assert "workerfleet_worker_job_duration_seconds" in families


def _job(**changes: object) -> Job:
    values: dict[str, object] = dict(
        id=1, queue="q", task="t", payload=None, priority=0, state="running", attempt=1,
        max_attempts=5, run_at=T0, created_at=T0, started_at=T0 + dt.timedelta(seconds=2),
        finished_at=None, worker_id="w", lease_expires_at=None, last_error=None,
        last_traceback=None, result=None, unique_key=None, rescues=0,
    )  # fmt: skip
    values.update(changes)
    return Job(**values)  # type: ignore[arg-type]


def test_queue_wait_counts_from_run_at_when_the_job_was_scheduled() -> None:
    assert loop.queue_wait_seconds(_job()) == 2.0
    later = _job(run_at=T0 + dt.timedelta(seconds=1.5))
    assert loop.queue_wait_seconds(later) == 0.5
    assert loop.queue_wait_seconds(_job(started_at=None)) is None


def test_reconnect_backoff_grows_to_its_cap_and_resets() -> None:
    backoff = retry.Backoff(initial_seconds=0.25, cap_seconds=1.0)
    assert [backoff.next_delay() for _ in range(4)] == [0.25, 0.5, 1.0, 1.0]
    backoff.reset()
    assert backoff.next_delay() == 0.25


async def test_shielded_finishes_the_write_before_honouring_a_cancel() -> None:
    written: list[str] = []
    started = asyncio.Event()
    release = asyncio.Event()

    async def write() -> None:
        started.set()
        await release.wait()
        written.append("done")

    caller = asyncio.create_task(loop.shielded(write()))
    await started.wait()
    caller.cancel()  # while the write is held open: it must not be cut short
    release.set()
    with contextlib.suppress(asyncio.CancelledError):
        await caller
    assert written == ["done"]
    assert caller.cancelled()


def test_heartbeat_skips_known_fenced_jobs_and_spots_lost_ones() -> None:
    state = health.RuntimeState("w", T0, 0.0, 4)
    for job_id in (1, 2, 3):
        state.running[(job_id, 1)] = health.RunningJob(job_id, 1, "q", "t", T0, 0.0)
    state.fenced_ids.add((3, 1))
    sent = heartbeat.running_refs(state)
    assert sent == {(1, 1): JobRef(1, "w", 1), (2, 1): JobRef(2, "w", 1)}
    assert heartbeat.lost_jobs(sent, {1}) == [(2, 1)]


def test_describe_error_names_the_type() -> None:
    assert connector.describe_error(ValueError("x")) == "ValueError: x"
    assert connector.describe_error(TimeoutError()) == "TimeoutError"

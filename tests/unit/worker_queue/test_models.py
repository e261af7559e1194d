"""Pure validation and row mapping of the queue models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from workerfleet.worker.models import (
    EnqueueRequest,
    InvalidJobError,
    Job,
    JobRef,
    QueueStats,
    WorkerRow,
    sort_claimed,
    validate_job_state,
    validate_queue_name,
    validate_seconds,
    validate_worker_state,
)

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _job_row(**overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "id": 1,
        "queue": "q",
        "task": "t",
        "payload": {"a": 1},
        "priority": 0,
        "state": "running",
        "attempt": 2,
        "max_attempts": 5,
        "run_at": NOW,
        "created_at": NOW,
        "started_at": NOW,
        "finished_at": None,
        "worker_id": "w1",
        "lease_expires_at": NOW + timedelta(seconds=15),
        "last_error": None,
        "last_traceback": None,
        "result": None,
        "unique_key": None,
        "rescues": 0,
        "extra_column": "ignored",
    }
    row.update(overrides)
    return row


@pytest.mark.parametrize("name", ["a", "emails", "0day", "a.b-c_d", "x" * 63])
def test_valid_queue_names(name: str) -> None:
    assert validate_queue_name(name) == name


@pytest.mark.parametrize("name", ["", "A", "_x", ".x", "a b", "a/b", "x" * 64, None, 3])
def test_invalid_queue_names_name_the_field(name: object) -> None:
    with pytest.raises(InvalidJobError) as error:
        validate_queue_name(name, field="queues[2]")
    assert error.value.field == "queues[2]"
    assert str(error.value).startswith("queues[2]: invalid queue name")


def test_enqueue_request_defaults_and_checks() -> None:
    request = EnqueueRequest("q", "t")
    assert (request.priority, request.max_attempts, request.run_at) == (0, None, None)
    aware = datetime(2030, 1, 1, tzinfo=timezone(timedelta(hours=2)))
    assert EnqueueRequest("q", "t", run_at=aware).run_at == aware
    with pytest.raises(InvalidJobError, match=r"^priority: expected an integer"):
        EnqueueRequest("q", "t", priority=True)
    with pytest.raises(InvalidJobError, match=r"^delay_seconds: must be a finite"):
        EnqueueRequest("q", "t", delay_seconds=float("nan"))
    with pytest.raises(InvalidJobError, match=r"^max_attempts: must be between 1"):
        EnqueueRequest("q", "t", max_attempts=-3)


def test_state_and_seconds_validation() -> None:
    assert validate_job_state("dead") == "dead"
    assert validate_worker_state("draining") == "draining"
    with pytest.raises(InvalidJobError, match=r"^state: unknown job state 'done'"):
        validate_job_state("done")
    with pytest.raises(InvalidJobError, match=r"^state: unknown worker state"):
        validate_worker_state("sleeping")
    assert validate_seconds(3, "lease_seconds") == 3.0
    with pytest.raises(InvalidJobError, match=r"^lease_seconds:"):
        validate_seconds(-1, "lease_seconds")
    with pytest.raises(InvalidJobError, match=r"^lease_seconds:"):
        validate_seconds("5", "lease_seconds")


def test_job_from_row_and_ref() -> None:
    job = Job.from_row(_job_row())
    assert job.payload == {"a": 1}
    assert job.ref == JobRef(id=1, worker_id="w1", attempt=2)
    never_claimed = Job.from_row(_job_row(worker_id=None, state="pending", attempt=0))
    with pytest.raises(ValueError, match=r"never been claimed"):
        _ = never_claimed.ref


def test_sort_claimed_orders_by_priority_then_run_at_then_id() -> None:
    jobs = [
        Job.from_row(_job_row(id=3, priority=1, run_at=NOW)),
        Job.from_row(_job_row(id=1, priority=5, run_at=NOW + timedelta(seconds=1))),
        Job.from_row(_job_row(id=2, priority=1, run_at=NOW)),
        Job.from_row(_job_row(id=4, priority=1, run_at=NOW - timedelta(seconds=1))),
    ]
    assert [job.id for job in sort_claimed(jobs)] == [1, 4, 2, 3]


def test_other_rows() -> None:
    worker = WorkerRow.from_row(
        {
            "id": "w",
            "pool": "p",
            "queues": ["a", "b"],
            "pod": None,
            "started_at": NOW,
            "heartbeat_at": NOW,
            "state": "online",
            "current_jobs": 1,
            "jobs_succeeded": 2,
            "jobs_failed": 3,
            "version": None,
        }
    )
    assert worker.queues == ("a", "b")
    stats = QueueStats.from_row(
        {
            "queue": "q",
            "pending": 1,
            "scheduled": 2,
            "running": 3,
            "succeeded": 4,
            "dead": 5,
            "cancelled": 6,
            "oldest_pending_seconds": None,
            "finished_last_minute": 7,
            "failure_minutes_ago": [0, 3],
            "failed_per_minute": [2, 5],
            "dead_per_minute": [0, 1],
        }
    )
    assert (stats.scheduled, stats.finished_last_minute) == (2, 7)
    assert (stats.failed_within(1), stats.failed_within(4), stats.dead_within(60)) == (2, 7, 1)


def test_grant_counts_a_repeated_ref_once() -> None:
    from workerfleet.worker.repository import _grant

    first, second, fenced = JobRef(1, "w", 1), JobRef(2, "w", 1), JobRef(3, "w", 2)
    recorded = {(1, "w", 1), (2, "w", 1)}
    assert _grant([first, fenced, second, first], recorded) == [True, False, True, False]

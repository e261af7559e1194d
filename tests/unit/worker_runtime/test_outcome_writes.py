"""Recording a job's end: which errors are retried how, and that the write keeps
trying (conflicts at once, anything else after a backoff) until it lands."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
import pytest

from workerfleet.worker import connector, handlers, health, loop, retry
from workerfleet.worker.config import load_settings
from workerfleet.worker.metrics import WorkerMetrics

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
ENV = {
    "WORKERFLEET_DSN": "postgresql://app@db.example/jobs",
    "WORKERFLEET_QUEUES": "q",
    "WORKERFLEET_HANDLERS": "acme.jobs",
}


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (asyncpg.DeadlockDetectedError("deadlock detected"), "conflict"),
        (asyncpg.SerializationError("could not serialize access"), "conflict"),
        (
            asyncpg.InternalClientError(
                "cannot switch to state 11; another operation (2) is in progress"
            ),
            "unreachable",
        ),
        (asyncpg.exceptions.AdminShutdownError("terminating connection"), "unreachable"),
        (asyncpg.ConnectionDoesNotExistError("connection was closed"), "unreachable"),
        (ConnectionRefusedError(111, "refused"), "unreachable"),
        (TimeoutError(), "unreachable"),
        (asyncpg.UniqueViolationError("duplicate key"), "unexpected"),
        (ValueError("a bug"), "unexpected"),
    ],
)
def test_errors_are_classified_for_retrying(error: BaseException, kind: str) -> None:
    assert connector.classify_error(error) == kind


def test_a_connection_is_closed_only_after_errors_that_leave_it_in_doubt() -> None:
    broken = connector.BROKEN_CONNECTION_ERRORS
    assert isinstance(asyncpg.InternalClientError("cannot switch to state 11"), broken)
    assert isinstance(asyncpg.exceptions.AdminShutdownError("shutting down"), broken)
    assert not isinstance(asyncpg.DeadlockDetectedError("deadlock detected"), broken)
    assert not isinstance(asyncpg.UniqueViolationError("duplicate key"), broken)


class CountingBackoff(retry.Backoff):
    """No real waiting; counts how often a pause was asked for."""

    def __init__(self) -> None:
        super().__init__(0.0, 0.0)


@pytest.fixture
def backoffs(monkeypatch: pytest.MonkeyPatch) -> list[CountingBackoff]:
    made: list[CountingBackoff] = []

    def make() -> CountingBackoff:
        made.append(CountingBackoff())
        return made[-1]

    monkeypatch.setattr(connector, "reconnect_backoff", make)
    return made


def _job_loop(**env: str) -> loop.JobLoop:
    state = health.RuntimeState("w", T0, 0.0, 4)
    handler = handlers.CommandHandler(["true"], {})
    settings = load_settings({**ENV, **env})
    return loop.JobLoop(settings, None, handler, WorkerMetrics(), state)  # type: ignore[arg-type]


def _scripted(*steps: Any) -> tuple[list[int], Any]:
    """A write that raises or returns each step in turn; counts its calls."""
    calls: list[int] = []

    async def write() -> Any:
        calls.append(1)
        step = steps[len(calls) - 1]
        if isinstance(step, BaseException):
            raise step
        return step

    return calls, write


async def test_conflicts_are_retried_at_once_and_counted(
    backoffs: list[CountingBackoff],
) -> None:
    job_loop = _job_loop()
    calls, write = _scripted(
        asyncpg.DeadlockDetectedError("deadlock detected"),
        asyncpg.SerializationError("could not serialize access"),
        True,
    )
    assert await job_loop._record_end((1, 1), "complete", write) is True
    assert len(calls) == 3
    assert backoffs[-1].failures == 0  # no pause before either retry
    conflicts = job_loop.metrics.database_conflicts.labels(operation="complete")
    assert conflicts._value.get() == 2
    # A conflict says nothing about reachability: readiness is not touched.
    assert job_loop.state.database.connected is not False


async def test_any_other_error_is_retried_after_a_backoff_until_the_write_lands(
    backoffs: list[CountingBackoff],
) -> None:
    job_loop = _job_loop()
    calls, write = _scripted(
        asyncpg.InternalClientError("cannot switch to state 11"),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        asyncpg.UniqueViolationError("not a transient error, retried all the same"),
        "fenced",
    )
    assert await job_loop._record_end((1, 1), "fail", write) == "fenced"
    assert len(calls) == 4
    assert backoffs[-1].failures == 3
    assert job_loop.state.database.connected is True  # the last call reached it


async def test_the_write_gives_up_at_its_deadline(
    backoffs: list[CountingBackoff], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The deadline is the lease (2 ms here) or the minimum, whichever is longer.
    monkeypatch.setattr(loop, "RECORD_END_MIN_DEADLINE_SECONDS", 0.0)
    job_loop = _job_loop(WORKERFLEET_HEARTBEAT_INTERVAL="1ms", WORKERFLEET_LEASE_DURATION="2ms")

    async def never_lands() -> bool:
        raise asyncpg.InternalClientError("cannot switch to state 11")

    assert await job_loop._record_end((1, 1), "release", never_lands) is None
    assert backoffs[-1].failures >= 1

"""Each due run of a schedule is enqueued exactly once, against real PostgreSQL: two
schedulers at the same instant, a restart, a clock stepped back, a schedule removed and
declared again. The clock is passed in, so no test waits for a minute to turn."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from workerfleet.worker import schedules
from workerfleet.worker.connector import Connector
from workerfleet.worker.models import ScheduleDefinition, ScheduleRow
from workerfleet.worker.repository import Repository

POOL = "team-a/reports"
T0 = datetime(2026, 5, 1, 10, 0, 30, tzinfo=UTC)  # registered half a minute past 10:00


def minute(n: int, seconds: float = 0.2) -> datetime:
    """n minutes past 10:00, a little after the minute turned."""
    return datetime(2026, 5, 1, 10, 0, tzinfo=UTC) + timedelta(minutes=n, seconds=seconds)


def every_minute(**fields: object) -> ScheduleDefinition:
    base: dict[str, object] = {
        "name": "tick",
        "queue": "reports",
        "task": "tick",
        "cron": "* * * * *",
        "payload": {"kind": "tick"},
        "priority": 3,
        "max_attempts": 2,
    }
    return ScheduleDefinition(**{**base, **fields})  # type: ignore[arg-type]


async def jobs_of(repo: Repository, task: str = "tick") -> list[int]:
    return sorted(job.id for job in await repo.list_jobs(task=task, limit=1000))


async def only_row(repo: Repository, name: str = "tick") -> ScheduleRow:
    (row,) = [r for r in await repo.list_schedules(POOL) if r.name == name]
    return row


async def test_a_due_run_is_enqueued_once_with_the_declared_job(repo: Repository) -> None:
    await schedules.register(repo, POOL, "operator", [every_minute()], T0)
    assert await schedules.run_due(repo, POOL, "operator", minute(0, 45)) == []  # not yet due

    (result,) = await schedules.run_due(repo, POOL, "operator", minute(1))
    assert result.advanced
    assert result.decision.run_at == minute(1, 0)
    job = await repo.get_job(result.job_id or 0)
    assert job is not None
    assert (job.queue, job.task, job.payload, job.priority, job.max_attempts, job.state) == (
        "reports",
        "tick",
        {"kind": "tick"},
        3,
        2,
        "pending",
    )
    assert await schedules.run_due(repo, POOL, "operator", minute(1, 0.9)) == []
    row = await only_row(repo)
    assert (row.last_scheduled_at, row.last_job_id, row.last_job_state) == (
        minute(1, 0),
        job.id,
        "pending",
    )
    assert row.next_run_at == minute(2, 0)
    (run,) = await repo.schedule_runs(POOL, "tick")
    assert (run.scheduled_at, run.job_id) == (minute(1, 0), job.id)


async def test_two_schedulers_at_the_same_instant_enqueue_one_job(
    postgres_dsn: str, repo: Repository
) -> None:
    await schedules.register(repo, POOL, "operator", [every_minute()], T0)
    rows = await repo.list_schedules(POOL)  # both read the row before either writes
    others = [await Connector.open(postgres_dsn, min_size=1, max_size=1) for _ in range(4)]
    try:
        results = await asyncio.gather(
            *[schedules.run_due(Repository(c), POOL, "operator", minute(1), rows) for c in others]
        )
    finally:
        for connector in others:
            await connector.close()
    flat = [r for found in results for r in found]
    assert len(flat) == 4  # each thought the run was due...
    assert sum(r.advanced for r in flat) == 1  # ...and one enqueued it
    assert len(await jobs_of(repo)) == 1


async def test_a_clock_stepped_back_never_enqueues_a_run_again(repo: Repository) -> None:
    await schedules.register(repo, POOL, "operator", [every_minute()], T0)
    await schedules.run_due(repo, POOL, "operator", minute(3))
    assert len(await jobs_of(repo)) == 1
    # The clock steps back two minutes: 10:01 and 10:02 look due again.
    stale = await schedules.run_due(repo, POOL, "operator", minute(2))
    assert [r.advanced for r in stale] == []  # nothing later than the mark is due
    rows = [
        r.__class__(**{**vars(r), "last_scheduled_at": None})
        for r in await repo.list_schedules(POOL)
    ]
    # Even a scheduler holding an outdated row (it never saw the 10:03 run) cannot redo it.
    (again,) = await schedules.run_due(repo, POOL, "operator", minute(3), rows)
    assert not again.advanced
    assert len(await jobs_of(repo)) == 1
    (later,) = await schedules.run_due(repo, POOL, "operator", minute(4))
    assert later.advanced
    assert len(await jobs_of(repo)) == 2


async def test_runs_missed_while_down_enqueue_the_latest_and_count_the_rest(
    repo: Repository,
) -> None:
    await schedules.register(repo, POOL, "operator", [every_minute()], T0)
    # The scheduler was away from 10:00:30 to 10:10:20: ten runs fell.
    (result,) = await schedules.run_due(repo, POOL, "operator", minute(10, 20))
    assert result.advanced
    assert result.decision.run_at == minute(10, 0)
    assert (result.decision.missed, result.decision.latest_missed) == (9, minute(9, 0))
    row = await only_row(repo)
    assert (row.missed_runs, row.last_missed_at, row.last_scheduled_at) == (
        9,
        minute(9, 0),
        minute(10, 0),
    )
    assert len(await jobs_of(repo)) == 1


async def test_a_missed_run_past_the_starting_deadline_is_skipped_and_counted(
    repo: Repository,
) -> None:
    definition = every_minute(starting_deadline_seconds=30.0)
    await schedules.register(repo, POOL, "operator", [definition], T0)
    (late,) = await schedules.run_due(repo, POOL, "operator", minute(3, 45))
    assert late.advanced
    assert late.decision.run_at is None
    assert (late.decision.missed, late.decision.latest_missed) == (3, minute(3, 0))
    assert await jobs_of(repo) == []
    (in_time,) = await schedules.run_due(repo, POOL, "operator", minute(4, 10))
    assert (in_time.decision.run_at, in_time.decision.missed) == (minute(4, 0), 0)
    row = await only_row(repo)
    assert (row.missed_runs, len(await jobs_of(repo))) == (3, 1)


async def test_a_restarted_scheduler_sees_what_fell_while_it_was_down(repo: Repository) -> None:
    await schedules.register(repo, POOL, "operator", [every_minute()], T0)
    await schedules.run_due(repo, POOL, "operator", minute(1))
    # A new process registers the same definitions later: the schedule keeps its marks.
    await schedules.register(repo, POOL, "operator", [every_minute()], minute(5, 30))
    (result,) = await schedules.run_due(repo, POOL, "operator", minute(5, 31))
    assert (result.decision.run_at, result.decision.missed) == (minute(5, 0), 3)


async def test_new_times_or_a_resume_start_afresh_without_counting_missed_runs(
    repo: Repository,
) -> None:
    await schedules.register(repo, POOL, "operator", [every_minute()], T0)
    await schedules.run_due(repo, POOL, "operator", minute(1))
    await schedules.register(repo, POOL, "operator", [every_minute(cron="*/2 * * * *")], minute(7))
    (result,) = await schedules.run_due(repo, POOL, "operator", minute(8))
    assert (result.decision.run_at, result.decision.missed) == (minute(8, 0), 0)

    await schedules.register(
        repo, POOL, "operator", [every_minute(cron="*/2 * * * *", suspended=True)], minute(9)
    )
    assert await schedules.run_due(repo, POOL, "operator", minute(14)) == []
    row = await only_row(repo)
    assert row.suspended
    await schedules.register(repo, POOL, "operator", [every_minute(cron="*/2 * * * *")], minute(15))
    (resumed,) = await schedules.run_due(repo, POOL, "operator", minute(16))
    assert (resumed.decision.run_at, resumed.decision.missed) == (minute(16, 0), 0)
    assert (await only_row(repo)).missed_runs == 0


async def test_a_schedule_removed_and_declared_again_keeps_its_runs(repo: Repository) -> None:
    await schedules.register(repo, POOL, "operator", [every_minute()], T0)
    await schedules.run_due(repo, POOL, "operator", minute(2))
    await schedules.register(repo, POOL, "operator", [], minute(2, 10))
    assert await repo.list_schedules(POOL) == []
    await schedules.register(repo, POOL, "operator", [every_minute()], minute(1, 50))
    row = await only_row(repo)
    assert row.last_scheduled_at == minute(2, 0)
    assert await schedules.run_due(repo, POOL, "operator", minute(2, 30)) == []
    assert len(await jobs_of(repo)) == 1


async def test_each_source_runs_its_own_and_a_taken_name_is_left_alone(repo: Repository) -> None:
    await schedules.register(repo, POOL, "operator", [every_minute()], T0)
    registered = await schedules.register(
        repo,
        POOL,
        "worker",
        [every_minute(), every_minute(name="sweep", task="sweep")],
        T0,
    )
    assert {r.name: r.taken for r in registered} == {"tick": True, "sweep": False}
    assert {(r.name, r.source) for r in await repo.list_schedules(POOL)} == {
        ("tick", "operator"),
        ("sweep", "worker"),
    }
    worker_runs = await schedules.run_due(repo, POOL, "worker", minute(1))
    assert [r.row.name for r in worker_runs] == ["sweep"]
    operator_runs = await schedules.run_due(repo, POOL, "operator", minute(1))
    assert [r.row.name for r in operator_runs] == ["tick"]
    # Another pool's schedule of the same name is another schedule.
    await schedules.register(repo, "team-b/reports", "operator", [every_minute()], T0)
    (other,) = await schedules.run_due(repo, "team-b/reports", "operator", minute(1))
    assert other.advanced


async def test_unchanged_definitions_are_not_written_again(repo: Repository) -> None:
    (first,) = await schedules.register(repo, POOL, "operator", [every_minute()], T0)
    (second,) = await schedules.register(repo, POOL, "operator", [every_minute()], minute(3))
    (changed,) = await schedules.register(
        repo, POOL, "operator", [every_minute(payload={"kind": "tock"})], minute(3)
    )
    assert (first.written, second.written, changed.written) == (True, False, True)
    assert (await only_row(repo)).since == T0  # the payload is not a time: since stays


@pytest.mark.parametrize("deadline", [None, 600.0])
async def test_the_next_run_time_is_the_earliest_of_the_source(
    repo: Repository, deadline: float | None
) -> None:
    await schedules.register(
        repo,
        POOL,
        "operator",
        [
            every_minute(cron="*/5 * * * *", starting_deadline_seconds=deadline),
            every_minute(name="hourly", cron="@hourly"),
            every_minute(name="off", suspended=True),
        ],
        T0,
    )
    rows = await repo.list_schedules(POOL)
    assert schedules.next_run_time(rows, "operator", minute(1)) == minute(5, 0)
    assert schedules.next_run_time(rows, "operator", minute(5, 0)) == minute(10, 0)
    assert schedules.next_run_time(rows, "worker", minute(1)) is None

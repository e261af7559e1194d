"""The worker-side scheduler for @task(schedule=...): one worker of a pool leads (holds the
advisory lock), its due runs are enqueued once, and another worker takes over when the
leader stops. Real PostgreSQL; the schedulers' clock is the real one shifted so that a
minute turns a moment after the test starts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from localcluster.loopback import free_port
from localcluster.waiting import wait_for_async
from workerfleet.worker import config, handlers, scheduler, tasks
from workerfleet.worker.connector import Connector
from workerfleet.worker.main import WorkerProcess
from workerfleet.worker.models import ScheduleRow
from workerfleet.worker.repository import Repository

POOL = "reports"


@tasks.task(schedule="* * * * *")
async def tick(ctx: tasks.JobContext, payload: object) -> None:
    return None


@tasks.task(schedule=tasks.Schedule("0 9 * * MON-FRI", time_zone="Europe/Riga", payload={"a": 1}))
def report(ctx: tasks.JobContext, payload: object) -> None:
    return None


@tasks.task()
def unscheduled(ctx: tasks.JobContext, payload: object) -> None:
    return None


class ShiftedClock:
    """Real time, shifted so that the next minute turns ``lead`` seconds from now."""

    def __init__(self, lead: float = 1.0) -> None:
        self.offset = timedelta(0)
        self.turn_minute_in(lead)

    def turn_minute_in(self, lead: float) -> None:
        now = datetime.now(UTC) + self.offset
        boundary = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
        self.offset += boundary - timedelta(seconds=lead) - now

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


def test_scheduled_tasks_become_definitions_on_the_first_queue() -> None:
    registry = tasks.TaskRegistry(
        [getattr(f, tasks.TASK_ATTRIBUTE) for f in (tick, report, unscheduled)]
    )
    found = {d.name: d for d in scheduler.definitions(registry, "reports")}
    assert set(found) == {"tick", "report"}
    assert (found["report"].cron, found["report"].time_zone, found["report"].payload) == (
        "0 9 * * MON-FRI",
        "Europe/Riga",
        {"a": 1},
    )
    assert {d.queue for d in found.values()} == {"reports"}


def test_a_bad_schedule_fails_at_declaration_naming_the_task() -> None:
    with pytest.raises(tasks.TaskDefinitionError, match=r"task 'x': schedule: '61 \* \* \* \*'"):
        tasks.task("x", schedule="61 * * * *")
    with pytest.raises(tasks.TaskDefinitionError, match="unknown time zone"):
        tasks.task("x", schedule=tasks.Schedule("@daily", time_zone="Mars/Base"))
    with pytest.raises(tasks.TaskDefinitionError, match=r"task 'x': schedule: "):
        tasks.task("x", schedule=tasks.Schedule("@daily", starting_deadline="soon"))
    with pytest.raises(tasks.TaskDefinitionError, match="must be at least 10s, got 3s"):
        tasks.task("x", schedule=tasks.Schedule("@daily", starting_deadline=3))


@pytest.fixture
async def connectors(queue_dsn: str) -> AsyncIterator[list[Connector]]:
    opened = [await Connector.open(queue_dsn, min_size=1, max_size=2) for _ in range(3)]
    try:
        yield opened
    finally:
        for connector in opened:
            await connector.close()


async def test_one_worker_leads_each_run_is_enqueued_once_and_another_takes_over(
    queue_dsn: str,
    connectors: list[Connector],
    repository: Repository,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(scheduler, "LOCK_RETRY_SECONDS", 0.2)
    monkeypatch.setattr(scheduler, "LEASE_CHECK_SECONDS", 0.3)
    registry = tasks.TaskRegistry([getattr(tick, tasks.TASK_ATTRIBUTE)])
    declared = scheduler.definitions(registry, "reports")
    clock = ShiftedClock(lead=1.5)
    workers = [
        scheduler.WorkerScheduler(queue_dsn, POOL, Repository(c), declared, clock)
        for c in connectors
    ]
    stops = [asyncio.Event() for _ in workers]
    running = [asyncio.create_task(w.run(s)) for w, s in zip(workers, stops, strict=True)]
    try:
        leader = await wait_for_async(
            "one worker to lead", lambda: next((w for w in workers if w.leading), None)
        )
        first = await wait_for_async(
            "the first run's job", lambda: repository.list_jobs(task="tick"), timeout=10
        )
        await asyncio.sleep(1.0)  # every scheduler has looked again since
        assert [w.leading for w in workers].count(True) == 1
        assert len(await repository.list_jobs(task="tick")) == 1
        (row,) = await repository.list_schedules(POOL)
        assert (row.source, row.queue, row.last_job_id) == ("worker", "reports", first[0].id)

        stops[workers.index(leader)].set()
        await running[workers.index(leader)]
        successor = await wait_for_async(
            "another worker to take over",
            lambda: next((w for w in workers if w.leading and w is not leader), None),
        )
        clock.turn_minute_in(1.0)
        await wait_for_async(
            "the next run's job, from the new leader",
            lambda: _count_at_least(repository, 2),
            timeout=10,
        )
        await asyncio.sleep(1.0)
        runs = await repository.schedule_runs(POOL, "tick")
        assert len(runs) == 2
        assert len({run.scheduled_at for run in runs}) == 2
        assert all(run.scheduled_at.second == 0 for run in runs)
        assert successor.leading
    finally:
        for stop in stops:
            stop.set()
        await asyncio.gather(*running)


async def _count_at_least(repository: Repository, count: int) -> bool:
    return len(await repository.list_jobs(task="tick")) >= count


async def test_a_worker_whose_module_declares_schedules_registers_them(
    queue_dsn: str, repository: Repository
) -> None:
    settings = config.load_settings(
        {
            "WORKERFLEET_DSN": queue_dsn,
            "WORKERFLEET_QUEUES": "reports,other",
            "WORKERFLEET_POOL": POOL,
            "WORKERFLEET_HANDLERS": "tests.scheduled",
            "WORKERFLEET_HEALTH_HOST": "127.0.0.1",
            "WORKERFLEET_HEALTH_PORT": str(free_port()),
            "WORKERFLEET_EVENT_LOOP": "asyncio",
        }
    )
    registry = tasks.TaskRegistry(
        [getattr(f, tasks.TASK_ATTRIBUTE) for f in (tick, report, unscheduled)]
    )
    process = WorkerProcess(settings, handlers.ModuleHandler(registry, "scheduled tasks"))
    running = asyncio.create_task(process.run())
    try:
        rows = await wait_for_async(
            "the worker to register its schedules",
            lambda: _rows_when(repository, 2),
            timeout=30,
        )
    finally:
        process.request_stop()
        assert await running == 0
    assert {(r.name, r.source, r.queue) for r in rows} == {
        ("report", "worker", "reports"),
        ("tick", "worker", "reports"),
    }


async def _rows_when(repository: Repository, count: int) -> list[ScheduleRow] | None:
    rows = await repository.list_schedules(POOL)
    return rows if len(rows) == count else None

"""Real worker processes against the real PostgreSQL: jobs run exactly once,
fencing drops stale outcomes, crashes and shutdowns lose nothing."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
from pathlib import Path

import asyncpg

from tests.integration.worker_runtime.support import Worker, eventually, wait_ready
from workerfleet.worker.models import EnqueueRequest
from workerfleet.worker.repository import Repository

QUEUE = "runtime"


async def _job(db: asyncpg.Connection, job_id: int) -> asyncpg.Record:
    row = await db.fetchrow("SELECT * FROM workerfleet.jobs WHERE id = $1", job_id)
    assert row is not None
    return row


async def _state(db: asyncpg.Connection, job_id: int) -> str:
    return str((await _job(db, job_id))["state"])


async def _worker_state(db: asyncpg.Connection, worker_id: str) -> str | None:
    value = await db.fetchval("SELECT state FROM workerfleet.workers WHERE id = $1", worker_id)
    return None if value is None else str(value)


async def _side_effects(db: asyncpg.Connection, job_id: int) -> list[asyncpg.Record]:
    return list(await db.fetch("SELECT * FROM runtime_test.side_effects WHERE job_id = $1", job_id))


async def test_several_workers_drain_5000_jobs_each_exactly_once(
    repository: Repository, db: asyncpg.Connection, queue_dsn: str, workers: list[Worker]
) -> None:
    total = 5000
    requests = [EnqueueRequest(QUEUE, "record", {"n": n}) for n in range(total)]
    ids = await repository.enqueue_many(requests)
    assert len(set(ids)) == total
    fleet = [Worker(queue_dsn, concurrency=8, extra_env={"WORKERFLEET_LOG_LEVEL": "WARNING"})
             for _ in range(3)]  # fmt: skip
    workers.extend(fleet)
    for worker in fleet:
        worker.start()

    async def drained() -> bool:
        done = await db.fetchval("SELECT count(*) FROM workerfleet.jobs WHERE state = 'succeeded'")
        return bool(done == total)

    await eventually(drained, "all 5000 jobs to succeed", within=240)
    rows = await db.fetch(
        "SELECT id, state, attempt, payload, result, worker_id FROM workerfleet.jobs"
    )
    assert len(rows) == total
    assert {row["state"] for row in rows} == {"succeeded"}
    assert {row["attempt"] for row in rows} == {1}
    assert all(row["result"] == row["payload"] for row in rows)
    per_job = await db.fetch(
        "SELECT job_id, count(*) AS runs FROM runtime_test.side_effects GROUP BY job_id"
    )
    assert len(per_job) == total
    assert {row["runs"] for row in per_job} == {1}
    assert {row["job_id"] for row in per_job} == set(ids)
    # The work was shared: every worker ran some of it.
    assert len({row["worker_id"] for row in rows}) == len(fleet)
    for worker in fleet:
        worker.signal(signal.SIGTERM)
    assert [worker.wait_exit() for worker in fleet] == [0, 0, 0]
    states = await db.fetch("SELECT state FROM workerfleet.workers")
    assert [row["state"] for row in states] == ["offline"] * len(fleet)


async def test_a_job_taken_away_mid_run_has_its_outcome_dropped_and_counted(
    repository: Repository, db: asyncpg.Connection, queue_dsn: str, workers: list[Worker]
) -> None:
    # Long heartbeat interval: the test, not the worker, decides when the lease expires.
    worker = Worker(
        queue_dsn,
        concurrency=1,
        extra_env={"WORKERFLEET_HEARTBEAT_INTERVAL": "1s", "WORKERFLEET_LEASE_DURATION": "30s"},
    ).start()
    workers.append(worker)
    await wait_ready(worker)
    job_id = await repository.enqueue(QUEUE, "slow_record", {"seconds": 3}, max_attempts=5)
    await eventually(lambda: _side_effects_started(db, job_id), "the job to start")

    async def rescued() -> bool:
        await db.execute(
            "UPDATE workerfleet.jobs SET lease_expires_at = now() - interval '1 second' "
            "WHERE id = $1 AND state = 'running'",
            job_id,
        )
        return (await repository.rescue_expired_leases()).rescued == 1

    await eventually(rescued, "the expired lease to be rescued")
    stolen = await eventually(
        lambda: repository.claim("thief", [QUEUE], 1, 60.0), "the thief to claim the job"
    )
    assert stolen[0].id == job_id
    assert stolen[0].attempt == 2

    await eventually(
        lambda: worker.metric("workerfleet_worker_jobs_fenced_total", queue=QUEUE) == 1,
        "the fenced counter to rise",
    )
    row = await _job(db, job_id)
    assert (row["state"], row["worker_id"], row["attempt"]) == ("running", "thief", 2)
    assert worker.metric("workerfleet_worker_jobs_succeeded_total") == 0
    messages = [event["message"] for event in worker.log_events()]
    assert any("fenced" in message for message in messages)
    # The rightful holder can still finish it.
    assert await repository.complete(stolen[0].ref, {"by": "thief"})
    assert (await _job(db, job_id))["result"] == {"by": "thief"}


async def _side_effects_started(db: asyncpg.Connection, job_id: int) -> bool:
    return await _state(db, job_id) == "running"


async def test_a_sigkilled_workers_job_runs_again_on_another_worker_once(
    repository: Repository, db: asyncpg.Connection, queue_dsn: str, workers: list[Worker]
) -> None:
    victim = Worker(queue_dsn, concurrency=1).start()
    workers.append(victim)
    await wait_ready(victim)
    job_id = await repository.enqueue(QUEUE, "slow_record", {"seconds": 2})
    await eventually(lambda: _side_effects_started(db, job_id), "the job to start")
    victim_id = (await _job(db, job_id))["worker_id"]
    victim.signal(signal.SIGKILL)
    assert victim.wait_exit() == -signal.SIGKILL
    assert await _side_effects(db, job_id) == []

    async def reaped() -> bool:
        result = await repository.reap_dead_workers(older_than_seconds=1.0)
        return result.jobs_released == 1

    await eventually(reaped, "the dead worker to be reaped")
    assert await _worker_state(db, victim_id) == "dead"
    assert await _state(db, job_id) == "pending"

    rescuer = Worker(queue_dsn, concurrency=1).start()
    workers.append(rescuer)
    await eventually(lambda: _is(db, job_id, "succeeded"), "the job to succeed elsewhere")
    row = await _job(db, job_id)
    assert row["worker_id"] != victim_id
    effects = await _side_effects(db, job_id)
    assert len(effects) == 1
    assert effects[0]["worker_id"] == row["worker_id"]


async def _is(db: asyncpg.Connection, job_id: int, state: str) -> bool:
    return await _state(db, job_id) == state


async def test_sigterm_lets_a_long_job_finish_within_the_grace_period(
    repository: Repository, db: asyncpg.Connection, queue_dsn: str, workers: list[Worker]
) -> None:
    worker = Worker(queue_dsn, concurrency=2, extra_env={"WORKERFLEET_SHUTDOWN_GRACE": "30s"})
    workers.append(worker.start())
    await wait_ready(worker)
    job_id = await repository.enqueue(QUEUE, "slow_record", {"seconds": 2})
    await eventually(lambda: _side_effects_started(db, job_id), "the job to start")
    worker_id = (await _job(db, job_id))["worker_id"]
    worker.signal(signal.SIGTERM)
    # Draining: unready at once, recorded as draining, and no new claims.
    await eventually(lambda: worker.probe("/readyz") == 503, "readiness to drop")
    await eventually(lambda: _worker_state_is(db, worker_id, "draining"), "state draining")
    late_id = await repository.enqueue(QUEUE, "record", {"late": True})
    assert worker.wait_exit() == 0
    row = await _job(db, job_id)
    assert (row["state"], row["attempt"]) == ("succeeded", 1)
    assert len(await _side_effects(db, job_id)) == 1
    assert await _state(db, late_id) == "pending"
    assert await _worker_state(db, worker_id) == "offline"


async def _worker_state_is(db: asyncpg.Connection, worker_id: str, state: str) -> bool:
    return await _worker_state(db, worker_id) == state


async def test_sigterm_with_a_short_grace_releases_the_job_without_a_failed_attempt(
    repository: Repository, db: asyncpg.Connection, queue_dsn: str, workers: list[Worker]
) -> None:
    worker = Worker(queue_dsn, concurrency=1, extra_env={"WORKERFLEET_SHUTDOWN_GRACE": "300ms"})
    workers.append(worker.start())
    await wait_ready(worker)
    job_id = await repository.enqueue(QUEUE, "slow_record", {"seconds": 60})
    await eventually(lambda: _side_effects_started(db, job_id), "the job to start")
    worker_id = (await _job(db, job_id))["worker_id"]
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit() == 0
    row = await _job(db, job_id)
    assert row["state"] == "pending"
    assert row["attempt"] == 0  # the interrupted run does not count
    assert row["last_error"] is None
    assert await _side_effects(db, job_id) == []
    assert await _worker_state(db, worker_id) == "offline"
    assert any(e["message"].startswith("job released") for e in worker.log_events())


async def test_a_second_signal_releases_running_jobs_without_waiting_for_the_grace(
    repository: Repository, db: asyncpg.Connection, queue_dsn: str, workers: list[Worker]
) -> None:
    worker = Worker(queue_dsn, concurrency=2, extra_env={"WORKERFLEET_SHUTDOWN_GRACE": "10m"})
    workers.append(worker.start())
    await wait_ready(worker)
    job_id = await repository.enqueue(QUEUE, "slow_record", {"seconds": 600})
    await eventually(lambda: _side_effects_started(db, job_id), "the job to start")
    worker.signal(signal.SIGTERM)
    await eventually(lambda: worker.probe("/readyz") == 503, "readiness to drop")
    assert worker.process is not None
    assert worker.process.poll() is None  # still waiting for the job
    worker.signal(signal.SIGINT)
    assert worker.wait_exit() == 0
    row = await _job(db, job_id)
    assert (row["state"], row["attempt"], row["last_error"]) == ("pending", 0, None)


async def test_failures_are_retried_with_backoff_then_dead_lettered_with_the_error(
    repository: Repository, db: asyncpg.Connection, queue_dsn: str, workers: list[Worker]
) -> None:
    worker = Worker(queue_dsn).start()
    workers.append(worker)
    job_id = await repository.enqueue(
        QUEUE, "fail", {"rate": 1, "message": "upstream said no"}, max_attempts=3
    )
    await eventually(lambda: _is(db, job_id, "dead"), "the job to be dead-lettered")
    row = await _job(db, job_id)
    assert row["attempt"] == 3
    assert row["last_error"] == "RuntimeError: upstream said no (attempt 3)"
    assert "Traceback" in row["last_traceback"]
    assert "demo_handlers.py" in row["last_traceback"]
    assert worker.metric("workerfleet_worker_jobs_failed_total", task="fail") == 3
    assert worker.metric("workerfleet_worker_jobs_retried_total", task="fail") == 2
    assert worker.metric("workerfleet_worker_jobs_dead_total", task="fail") == 1
    retries = [e for e in worker.log_events() if e["message"] == "job failed; retrying"]
    assert [e["attempt"] for e in retries] == [1, 2]
    assert all(0.05 <= e["retry_in_seconds"] <= 0.2 for e in retries)
    assert all(e["job_id"] == job_id and e["queue"] == QUEUE for e in retries)
    # Retry from dead: it runs again (and fails again, all attempts anew).
    assert await repository.retry_dead(job_id)
    await eventually(
        lambda: worker.metric("workerfleet_worker_jobs_dead_total", task="fail") == 2,
        "the retried job to die again",
    )


async def test_an_unknown_task_is_dead_lettered_at_once_with_a_clear_error(
    repository: Repository, db: asyncpg.Connection, queue_dsn: str, workers: list[Worker]
) -> None:
    workers.append(Worker(queue_dsn).start())
    job_id = await repository.enqueue(QUEUE, "no_such_task", {}, max_attempts=5)
    refused_id = await repository.enqueue(QUEUE, "refuse", {"bad": 1}, max_attempts=5)
    await eventually(lambda: _is(db, job_id, "dead"), "the unknown task to be dead")
    row = await _job(db, job_id)
    assert row["attempt"] == 1
    assert "unknown task 'no_such_task'" in row["last_error"]
    assert "record" in row["last_error"]  # lists what is known
    await eventually(lambda: _is(db, refused_id, "dead"), "the permanent failure to be dead")
    refused = await _job(db, refused_id)
    assert refused["attempt"] == 1
    assert "can never work" in refused["last_error"]


async def test_a_job_past_its_timeout_fails_with_a_clear_error(
    repository: Repository, db: asyncpg.Connection, queue_dsn: str, workers: list[Worker]
) -> None:
    workers.append(Worker(queue_dsn, extra_env={"WORKERFLEET_JOB_TIMEOUT": "400ms"}).start())
    by_task = await repository.enqueue(QUEUE, "too_slow", None, max_attempts=1)
    by_default = await repository.enqueue(QUEUE, "sleep", {"seconds": 30}, max_attempts=1)
    await eventually(lambda: _is(db, by_task, "dead"), "the task-timeout job to fail")
    await eventually(lambda: _is(db, by_default, "dead"), "the default-timeout job to fail")
    assert "timed out after 0.3s" in (await _job(db, by_task))["last_error"]
    assert "timed out after 0.4s" in (await _job(db, by_default))["last_error"]


COMMAND = textwrap.dedent(
    """
    import json, os, sys
    payload = json.load(sys.stdin)
    if not isinstance(payload, dict) or "n" not in payload:
        print("rejected: payload needs an integer field 'n'", file=sys.stderr)
        sys.exit(3)
    if os.environ.get("WORKERFLEET_JOB_TASK") == "text":
        print("plain words")
    else:
        print(json.dumps({"square": payload["n"] ** 2,
                          "job": int(os.environ["WORKERFLEET_JOB_ID"]),
                          "dsn_visible": "WORKERFLEET_DSN" in os.environ}))
    """
)


async def test_a_command_handler_returns_stdout_and_reports_rejections(
    repository: Repository,
    db: asyncpg.Connection,
    queue_dsn: str,
    workers: list[Worker],
    tmp_path: Path,
) -> None:
    script = tmp_path / "square.py"
    script.write_text(COMMAND)
    workers.append(Worker(queue_dsn, handlers=f"command:{sys.executable} {script}").start())
    good = await repository.enqueue(QUEUE, "square", {"n": 7})
    text = await repository.enqueue(QUEUE, "text", {"n": 1})
    bad = await repository.enqueue(QUEUE, "square", {"m": 7}, max_attempts=2)
    await eventually(lambda: _is(db, good, "succeeded"), "the command job to succeed")
    assert (await _job(db, good))["result"] == {"square": 49, "job": good, "dsn_visible": False}
    await eventually(lambda: _is(db, text, "succeeded"), "the text job to succeed")
    assert (await _job(db, text))["result"] == "plain words"
    await eventually(lambda: _is(db, bad, "dead"), "the rejected job to be dead")
    row = await _job(db, bad)
    assert row["attempt"] == 2
    assert row["last_error"] == (
        "CommandFailedError: command exited with status 3: "
        "rejected: payload needs an integer field 'n'"
    )


async def test_a_command_past_the_job_timeout_is_killed_and_the_job_failed(
    repository: Repository,
    db: asyncpg.Connection,
    queue_dsn: str,
    workers: list[Worker],
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "pid"
    program = f"command:/bin/sh -c 'echo $$ > {pid_file}; exec sleep 300'"
    worker = Worker(queue_dsn, handlers=program, extra_env={"WORKERFLEET_JOB_TIMEOUT": "1s"})
    workers.append(worker.start())
    job_id = await repository.enqueue(QUEUE, "anything", {"n": 1}, max_attempts=1)
    await eventually(lambda: _is(db, job_id, "dead"), "the command job to time out")
    assert "timed out after 1s" in (await _job(db, job_id))["last_error"]
    pid = int(pid_file.read_text())

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    await eventually(gone, "the timed-out program to be killed")


async def test_a_result_jsonb_cannot_store_fails_its_job_and_no_other(
    repository: Repository, db: asyncpg.Connection, queue_dsn: str, workers: list[Worker]
) -> None:
    # Written as completions, these results would fail their batch of completions
    # with them, and be retried as if the database were down.
    workers.append(Worker(queue_dsn, concurrency=8).start())
    nul = await repository.enqueue(QUEUE, "unstorable_result", "nul", max_attempts=1)
    nan = await repository.enqueue(QUEUE, "unstorable_result", "nan", max_attempts=1)
    fine = await repository.enqueue_many(
        [EnqueueRequest(QUEUE, "echo", {"n": n}) for n in range(50)]
    )
    await eventually(lambda: _is(db, nul, "dead"), "the NUL result's job to be dead")
    await eventually(lambda: _is(db, nan, "dead"), "the NaN result's job to be dead")
    assert "result: holds a NUL character" in (await _job(db, nul))["last_error"]
    assert "result: is not storable as JSON" in (await _job(db, nan))["last_error"]

    async def all_fine() -> bool:
        done = await db.fetchval(
            "SELECT count(*) FROM workerfleet.jobs WHERE id = any($1) AND state = 'succeeded'",
            fine,
        )
        return bool(done == len(fine))

    await eventually(all_fine, "the other jobs to succeed")

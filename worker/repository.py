"""The queue's operations, one named query each (``sql/queries.sql``).

Every change to a running job (heartbeat, complete, fail, release) is fenced:
it matches the job's id, the holder's worker id, the attempt and state
``running``. When nothing matches the job was taken away (rescued, reaped,
cancelled) and the caller's outcome is dropped: ``False`` or ``"fenced"``.

``complete`` is a group commit: completions arriving while one is being
written wait for the next statement and share it (``complete_many``), so a
busy worker records many jobs per round trip while an idle one still writes
at once. Each caller still gets its own fenced True/False, and a caller
cancelled while waiting does not cancel the write.

Additions to the agreed contract (all backwards compatible):
- ``complete_many(items)`` records several completions in one statement.
- ``bury(ref, error, traceback)`` dead-letters a held job at once (permanent
  errors: unknown task, payload that can never work); ``dead`` or ``fenced``.
- ``QueueStats.pending`` counts jobs due now and excludes ``scheduled``
  (pending with ``run_at`` in the future); the two are disjoint.
- ``enqueue(max_attempts=None)`` leaves it to the worker that first claims the
  job: ``claim`` gives such jobs its ``default_max_attempts``.
- ``rescue_expired_leases`` and ``reap_dead_workers`` put a job back at its
  own ``run_at`` (its place in line) the first time its run is lost; a job
  rescued before waits ``backoff_seconds`` x 2^(rescues - 1), at most
  ``backoff_cap_seconds`` (a poison pill must not keep jumping the queue).
- ``ReapResult`` also carries ``jobs_dead`` (out of attempts), ``worker_ids``
  and ``pods`` (for restarting hung pods).
- ``cancel`` also cancels a running job (its holder is then fenced out and
  sees the job missing from its next heartbeat); ``retry_dead`` also
  re-queues a cancelled job.
- ``prune_workers(older_than_seconds)`` deletes offline/dead worker rows.
- ``recount_jobs()`` rebuilds the depth counters from the jobs table and says
  how far they had drifted; ``fold_job_counts()`` merges the counter rows of
  backends that have gone.
- ``rescue_unless_another_does()``: the workers' fallback housekeeping (rescue
  plus fold) under an advisory lock, None when another process holds it.
- Drains the operator asks for before a scale-in: ``drain_workers``,
  ``undrain_workers``, ``running_jobs_of_workers`` and ``pool_workers``; ``beat``
  is ``heartbeat`` that also answers the row's state, and a worker whose row is
  ``draining`` claims nothing (the claim locks its row).
- Recovery and retention take a scope (``queues``, ``pools``; None: everything),
  so a Monitor touches only the queues and workers of the pools it selects;
  ``rescue_expired_leases`` also takes a grace after lease expiry.
- ``recover`` runs rescue and reaping as one pass in one transaction under
  the database's recovery lock (``RECOVERY_LOCK_KEY``), so two passes (two
  operator replicas, a Monitor and the recover CLI) never run at once.
- fail, bury, rescue and reap count what they do per queue and minute
  (``job_failures``, read back through ``QueueStats.failures``);
  ``prune_failure_counts`` deletes the counts past the stats' hour.
- Schedules (``workerfleet.worker.schedules`` decides, these write):
  ``register_schedules``, ``list_schedules``, ``advance_schedule`` (a due run
  enqueued once) and ``schedule_runs``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from workerfleet.worker import models, tracing
from workerfleet.worker.connector import Connector
from workerfleet.worker.json_values import jsonb_text
from workerfleet.worker.models import (
    CountDrift,
    EnqueueRequest,
    HeartbeatResult,
    Job,
    JobRef,
    Outcome,
    PoolWorker,
    QueueStats,
    ReapResult,
    RecoveryResult,
    RescueResult,
    ScheduleRow,
    ScheduleRun,
    WorkerRow,
    WorkerStats,
)
from workerfleet.worker.queries import QUERIES

__all__ = [
    "NOTIFY_CHANNEL",
    "WORKERS_CHANNEL",
    "EnqueueRequest",
    "Outcome",
    "ReapResult",
    "RecoveryResult",
    "Repository",
    "RescueResult",
]

NOTIFY_CHANNEL = "workerfleet_jobs"
# Payload: a worker id whose row the operator changed (drain asked or taken back).
WORKERS_CHANNEL = "workerfleet_workers"
PRUNE_BATCH_ROWS = 10_000
# One prune statement deletes at most this many rows, so the counter rows it
# updates (the ones completions update too) are held for one short batch only.
PRUNE_BATCH_ROWS = 2_000
# Any fixed bigint shared by every workerfleet process: "wfrecovr" in ASCII.
RECOVERY_LOCK_KEY = 0x77667265636F7672
# Failure counts are read for the last FAILURE_HISTORY_MINUTES; a minute's margin.
FAILURE_COUNTS_KEEP_SECONDS = (models.FAILURE_HISTORY_MINUTES + 1) * 60.0
# Upper bound of one group-commit statement; more waiting completions take another.
COMPLETE_BATCH_MAX_JOBS = 500
# A job whose run is lost again (it was rescued before) waits this long before it
# may run again, doubling with each further rescue up to the cap.
RESCUE_BACKOFF_SECONDS = 30.0
RESCUE_BACKOFF_CAP_SECONDS = 600.0
_RefKey = tuple[int, str, int]
_Completion = tuple[JobRef, str | None, "asyncio.Future[bool]"]


def _validate_batch(rows: int) -> int:
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise models.InvalidJobError("batch_rows", f"must be a positive integer, got {rows!r}")
    return rows


def _key(ref: JobRef) -> _RefKey:
    return (ref.id, ref.worker_id, ref.attempt)


def _grant(refs: Sequence[JobRef], recorded: set[_RefKey]) -> list[bool]:
    """Which of ``refs`` were recorded; a ref given twice counts once, as if sequential."""
    remaining = set(recorded)
    granted = []
    for ref in refs:
        granted.append(_key(ref) in remaining)
        remaining.discard(_key(ref))
    return granted


class _CompletionBatcher:
    """Group commit for ``Repository.complete``: one writer task at a time."""

    def __init__(self, connector: Connector) -> None:
        self._connector = connector
        self._waiting: list[_Completion] = []
        self._writer: asyncio.Task[None] | None = None

    async def complete(self, ref: JobRef, result_json: str | None) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        # Mark any exception as seen even if the caller was cancelled meanwhile.
        future.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._waiting.append((ref, result_json, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_waiting(), name="workerfleet-complete")
        # Shielded: cancelling the caller must not cancel the write its outcome is in.
        return await asyncio.shield(future)

    async def _write_waiting(self) -> None:
        while self._waiting:
            batch = self._waiting[:COMPLETE_BATCH_MAX_JOBS]
            del self._waiting[:COMPLETE_BATCH_MAX_JOBS]
            try:
                granted = await _complete_many(
                    self._connector, [(ref, result) for ref, result, _ in batch]
                )
            except asyncio.CancelledError:
                for _, _, future in batch:
                    future.cancel()
                raise
            except Exception as error:
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, _, future), ok in zip(batch, granted, strict=True):
                if not future.done():
                    future.set_result(ok)


async def _complete_many(
    connector: Connector, items: Sequence[tuple[JobRef, str | None]]
) -> list[bool]:
    # A claim given twice is sent once, with its first result: as if sequential.
    first: dict[_RefKey, tuple[JobRef, str | None]] = {}
    for ref, result in items:
        first.setdefault(_key(ref), (ref, result))
    unique = list(first.values())
    rows = await connector.fetch(
        QUERIES["complete_many"],
        [ref.id for ref, _ in unique],
        [ref.worker_id for ref, _ in unique],
        [ref.attempt for ref, _ in unique],
        [result for _, result in unique],
    )
    recorded = {(row["id"], row["worker_id"], row["attempt"]) for row in rows}
    return _grant([ref for ref, _ in items], recorded)


class _Fetches(Protocol):
    """A connection pool or one connection (inside a transaction)."""

    async def fetchrow(self, query: str, *args: Any) -> Any: ...


def _optional_names(names: Sequence[str] | None, field: str) -> list[str] | None:
    if names is None:
        return None
    return [models.validate_queue_name(name, f"{field}[{i}]") for i, name in enumerate(names)]


async def _rescue(
    db: _Fetches,
    backoff: tuple[float, float],
    queues: Sequence[str] | None,
    grace_seconds: float,
) -> RescueResult:
    row = await db.fetchrow(
        QUERIES["rescue_expired_leases"],
        models.validate_seconds(backoff[0], "backoff_seconds"),
        models.validate_seconds(backoff[1], "backoff_cap_seconds"),
        _optional_names(queues, "queues"),
        models.validate_seconds(grace_seconds, "grace_seconds"),
    )
    assert row is not None  # an aggregate always returns one row
    return RescueResult(rescued=row["rescued"], dead=row["dead"])


async def _reap(
    db: _Fetches,
    older_than_seconds: float,
    backoff: tuple[float, float],
    pools: Sequence[str] | None,
) -> ReapResult:
    row = await db.fetchrow(
        QUERIES["reap_dead_workers"],
        models.validate_seconds(older_than_seconds, "older_than_seconds"),
        models.validate_seconds(backoff[0], "backoff_seconds"),
        models.validate_seconds(backoff[1], "backoff_cap_seconds"),
        None if pools is None else list(pools),
    )
    assert row is not None  # scalar subqueries always return one row
    return ReapResult(
        workers=len(row["worker_ids"]),
        jobs_released=row["jobs_released"],
        jobs_dead=row["jobs_dead"],
        worker_ids=tuple(row["worker_ids"]),
        pods=tuple(row["pods"]),
    )


class Repository:
    """Queue operations over a :class:`Connector`; no SQL is built here."""

    def __init__(self, connector: Connector) -> None:
        self.connector = connector
        self._completions = _CompletionBatcher(connector)

    # -- workers -------------------------------------------------------------

    async def register_worker(
        self, worker_id: str, pool: str, queues: Sequence[str], pod: str | None, version: str | None
    ) -> None:
        for index, queue in enumerate(queues):
            models.validate_queue_name(queue, f"queues[{index}]")
        await self.connector.execute(
            QUERIES["register_worker"], worker_id, pool, list(queues), pod, version
        )

    async def heartbeat(
        self,
        worker_id: str,
        running: Sequence[JobRef],
        lease_seconds: float,
        current_jobs: int,
        jobs_succeeded: int,
        jobs_failed: int,
    ) -> set[int]:
        """Refresh the worker row and extend the leases still held; returns their ids."""
        result = await self.beat(
            worker_id, running, lease_seconds, current_jobs, jobs_succeeded, jobs_failed
        )
        return set(result.held)

    async def beat(
        self,
        worker_id: str,
        running: Sequence[JobRef],
        lease_seconds: float,
        current_jobs: int,
        jobs_succeeded: int,
        jobs_failed: int,
    ) -> HeartbeatResult:
        """As :meth:`heartbeat`, also answering the row's state (a drain the operator asked)."""
        row = await self.connector.fetchrow(
            QUERIES["heartbeat"],
            worker_id,
            [ref.id for ref in running],
            [ref.attempt for ref in running],
            models.validate_seconds(lease_seconds, "lease_seconds"),
            current_jobs,
            jobs_succeeded,
            jobs_failed,
        )
        assert row is not None  # scalar subqueries always return one row
        return HeartbeatResult(held=frozenset(row["held"]), worker_state=row["worker_state"])

    async def set_worker_state(self, worker_id: str, state: str) -> None:
        await self.connector.execute(
            QUERIES["set_worker_state"], worker_id, models.validate_worker_state(state)
        )

    async def list_workers(self, pool: str | None = None) -> list[WorkerRow]:
        rows = await self.connector.fetch(QUERIES["list_workers"], pool)
        return [WorkerRow.from_row(row) for row in rows]

    # -- drains the operator asks for (scale-in) -----------------------------

    async def pool_workers(self, pool: str, dead_after_seconds: float) -> list[PoolWorker]:
        """The pool's online and draining workers with a fresh heartbeat, newest first."""
        rows = await self.connector.fetch(
            QUERIES["pool_workers"],
            pool,
            models.validate_seconds(dead_after_seconds, "dead_after_seconds"),
        )
        return [PoolWorker.from_row(row) for row in rows]

    async def drain_workers(self, worker_ids: Sequence[str]) -> set[str]:
        """Ask workers to drain; returns the ids marked. Once this returns, none of them
        claims again (claims lock the worker's row and refuse while it drains)."""
        if not worker_ids:
            return set()
        rows = await self.connector.fetch(QUERIES["drain_workers"], list(worker_ids))
        return {row["id"] for row in rows}

    async def undrain_workers(self, worker_ids: Sequence[str]) -> set[str]:
        """Take back drains the operator asked for; returns the ids back online."""
        if not worker_ids:
            return set()
        rows = await self.connector.fetch(QUERIES["undrain_workers"], list(worker_ids))
        return {row["id"] for row in rows}

    async def running_jobs_of_workers(self, worker_ids: Sequence[str]) -> dict[str, int]:
        """Running jobs per worker id, for the workers that hold any."""
        if not worker_ids:
            return {}
        rows = await self.connector.fetch(QUERIES["running_jobs_of_workers"], list(worker_ids))
        return {row["worker_id"]: int(row["jobs"]) for row in rows}

    # -- the job life cycle --------------------------------------------------

    async def claim(
        self,
        worker_id: str,
        queues: Sequence[str],
        limit: int,
        lease_seconds: float,
        default_max_attempts: int = models.DEFAULT_MAX_ATTEMPTS,
    ) -> list[Job]:
        """Lease up to ``limit`` due jobs of ``queues``, in claim order; a job enqueued
        without max_attempts gets ``default_max_attempts`` (the worker's setting)."""
        if limit <= 0 or not queues:
            return []
        lease = models.validate_seconds(lease_seconds, "lease_seconds")
        attempts = models.validate_max_attempts(default_max_attempts, "default_max_attempts")
        if len(queues) == 1:
            rows = await self.connector.fetch(
                QUERIES["claim_one_queue"], worker_id, queues[0], limit, lease, attempts
            )
        else:
            rows = await self.connector.fetch(
                QUERIES["claim"], worker_id, list(queues), limit, lease, attempts
            )
        return models.sort_claimed([Job.from_row(row) for row in rows])

    async def complete(self, ref: JobRef, result: Any = None) -> bool:
        """True if recorded; False when fenced (nothing changed). Group-committed."""
        return await self._completions.complete(ref, jsonb_text(result, "result"))

    async def complete_many(self, items: Sequence[tuple[JobRef, Any]]) -> list[bool]:
        """One statement for several completions; a False per fenced job, in order."""
        if not items:
            return []
        return await _complete_many(
            self.connector, [(ref, jsonb_text(res, "result")) for ref, res in items]
        )

    async def fail(
        self, ref: JobRef, error: str, traceback: str | None, retry_delay_seconds: float
    ) -> Outcome:
        """``retried`` (pending again after the delay), ``dead`` or ``fenced``."""
        row = await self.connector.fetchrow(
            QUERIES["fail"],
            ref.id,
            ref.worker_id,
            ref.attempt,
            error,
            traceback,
            models.validate_seconds(retry_delay_seconds, "retry_delay_seconds"),
        )
        if row is None:
            return "fenced"
        return "retried" if row["state"] == "pending" else "dead"

    async def bury(self, ref: JobRef, error: str, traceback: str | None) -> Outcome:
        """Dead-letter at once (a permanent error): ``dead`` or ``fenced``."""
        row = await self.connector.fetchrow(
            QUERIES["bury"], ref.id, ref.worker_id, ref.attempt, error, traceback
        )
        return "fenced" if row is None else "dead"

    async def release(self, ref: JobRef) -> bool:
        """Back to pending without spending the attempt; False when fenced."""
        row = await self.connector.fetchrow(QUERIES["release"], ref.id, ref.worker_id, ref.attempt)
        return row is not None

    async def cancel(self, job_id: int) -> bool:
        """Cancel a pending or running job; False if it is in no such state (or missing)."""
        return await self.connector.fetchrow(QUERIES["cancel"], job_id) is not None

    async def retry_dead(self, job_id: int) -> bool:
        """A dead (or cancelled) job back to pending with attempts reset; False if
        it is not dead/cancelled or its unique key is live in another job."""
        return await self.connector.fetchrow(QUERIES["retry_dead"], job_id) is not None

    # -- enqueue -------------------------------------------------------------

    async def enqueue(
        self,
        queue: str,
        task: str,
        payload: Any = None,
        *,
        priority: int = 0,
        run_at: datetime | None = None,
        delay_seconds: float | None = None,
        max_attempts: int | None = None,
        unique_key: str | None = None,
    ) -> int:
        """The new job's id, or the live job's id when ``unique_key`` is taken."""
        request = EnqueueRequest(
            queue, task, payload, priority, run_at, delay_seconds, max_attempts, unique_key
        )
        return (await self.enqueue_many([request]))[0]

    async def enqueue_many(self, requests: Sequence[EnqueueRequest]) -> list[int]:
        """Ids in the order of ``requests``, in one statement (and transaction).

        Without unique keys this is one plain INSERT; with any, each job goes
        through ``workerfleet.enqueue`` so the keys deduplicate in order.
        """
        if not requests:
            return []
        current = tracing.current_carrier()  # None (and free) unless tracing is in use
        traces = [jsonb_text(r.trace_context or current, "trace_context") for r in requests]
        if len(requests) == 1 and requests[0].unique_key is None:
            # Most enqueues are one job: a VALUES insert costs half the unnest path.
            one = requests[0]
            row = await self.connector.fetchrow(
                QUERIES["enqueue_one"],
                one.queue,
                one.task,
                jsonb_text(one.payload, "payload"),
                one.priority,
                one.run_at,
                one.max_attempts,
                one.delay_seconds,
                traces[0],
            )
            assert row is not None  # an INSERT ... RETURNING always returns its row
            return [int(row["id"])]
        if all(r.unique_key is None for r in requests):
            rows = await self.connector.fetch(
                QUERIES["enqueue_many_plain"],
                [r.queue for r in requests],
                [r.task for r in requests],
                [jsonb_text(r.payload, "payload") for r in requests],
                [r.priority for r in requests],
                [r.run_at for r in requests],
                [r.max_attempts for r in requests],
                [r.delay_seconds for r in requests],
                traces,
            )
            return [int(row["id"]) for row in rows]
        rows = await self.connector.fetch(
            QUERIES["enqueue_many"],
            [r.queue for r in requests],
            [r.task for r in requests],
            [jsonb_text(r.payload, "payload") for r in requests],
            [r.priority for r in requests],
            [r.run_at for r in requests],
            [r.max_attempts for r in requests],
            [r.unique_key for r in requests],
            [r.delay_seconds for r in requests],
            traces,
        )
        return [int(row["id"]) for row in rows]

    # -- reading -------------------------------------------------------------

    async def get_job(self, job_id: int) -> Job | None:
        row = await self.connector.fetchrow(QUERIES["get_job"], job_id)
        return None if row is None else Job.from_row(row)

    async def list_jobs(
        self,
        queue: str | None = None,
        state: str | None = None,
        task: str | None = None,
        limit: int = 50,
    ) -> list[Job]:
        if queue is not None:
            models.validate_queue_name(queue)
        if state is not None:
            models.validate_job_state(state)
        rows = await self.connector.fetch(QUERIES["list_jobs"], queue, state, task, limit)
        return [Job.from_row(row) for row in rows]

    async def queue_stats(self) -> list[QueueStats]:
        rows = await self.connector.fetch(QUERIES["queue_stats"])
        return [QueueStats.from_row(row) for row in rows]

    async def worker_stats(self, dead_after_seconds: float) -> list[WorkerStats]:
        rows = await self.connector.fetch(
            QUERIES["worker_stats"],
            models.validate_seconds(dead_after_seconds, "dead_after_seconds"),
        )
        return [WorkerStats.from_row(row) for row in rows]

    # -- recovery and retention ------------------------------------------------

    async def rescue_expired_leases(
        self,
        backoff_seconds: float = RESCUE_BACKOFF_SECONDS,
        backoff_cap_seconds: float = RESCUE_BACKOFF_CAP_SECONDS,
        *,
        queues: Sequence[str] | None = None,
        grace_seconds: float = 0.0,
    ) -> RescueResult:
        """Running jobs of ``queues`` (None: all) whose lease expired more than
        ``grace_seconds`` ago, back to pending (or dead when out of attempts)."""
        backoff = (backoff_seconds, backoff_cap_seconds)
        return await _rescue(self.connector, backoff, queues, grace_seconds)

    async def reap_dead_workers(
        self,
        older_than_seconds: float,
        backoff_seconds: float = RESCUE_BACKOFF_SECONDS,
        backoff_cap_seconds: float = RESCUE_BACKOFF_CAP_SECONDS,
        *,
        pools: Sequence[str] | None = None,
    ) -> ReapResult:
        """Workers of ``pools`` (None: all) silent for the age, marked dead; their jobs released."""
        backoff = (backoff_seconds, backoff_cap_seconds)
        return await _reap(self.connector, older_than_seconds, backoff, pools)

    async def recover(
        self,
        dead_after_seconds: float,
        *,
        queues: Sequence[str] | None = None,
        pools: Sequence[str] | None = None,
        grace_seconds: float = 0.0,
        backoff_seconds: float = RESCUE_BACKOFF_SECONDS,
        backoff_cap_seconds: float = RESCUE_BACKOFF_CAP_SECONDS,
    ) -> RecoveryResult:
        """Rescue expired leases of ``queues``, then reap dead workers of ``pools``,
        as one transaction holding the database's recovery lock.

        A second pass on the same database (another operator replica, another
        Monitor, ``workerfleet recover``) waits for this one to commit and then
        finds nothing this one handled: no job is rescued twice.
        """
        async with self.connector.transaction() as connection:
            await connection.execute(QUERIES["recovery_lock"], RECOVERY_LOCK_KEY)
            backoff = (backoff_seconds, backoff_cap_seconds)
            rescued = await _rescue(connection, backoff, queues, grace_seconds)
            reaped = await _reap(connection, dead_after_seconds, backoff, pools)
        return RecoveryResult(reaped=reaped, rescued=rescued)

    async def rescue_unless_another_does(
        self,
        backoff_seconds: float = RESCUE_BACKOFF_SECONDS,
        backoff_cap_seconds: float = RESCUE_BACKOFF_CAP_SECONDS,
    ) -> RescueResult | None:
        """The workers' fallback housekeeping: rescue expired leases and fold the
        counters of gone backends, unless another process is doing it right now
        (then None). One transaction under the recovery lock that Monitors and the
        recover CLI take too, so a worker never rescues alongside them."""
        backoff = (backoff_seconds, backoff_cap_seconds)
        async with self.connector.transaction() as connection:
            if not await connection.fetchval(QUERIES["housekeeping_try_lock"], RECOVERY_LOCK_KEY):
                return None
            rescued = await _rescue(connection, backoff, None, 0.0)
            await connection.fetchval(QUERIES["fold_job_counts"])
        return rescued

    async def fold_job_counts(self) -> int:
        """Merge the depth counters of backends that have gone; returns the rows folded."""
        return int(await self.connector.fetchval(QUERIES["fold_job_counts"]))

    async def recount_jobs(self) -> list[CountDrift]:
        """Rebuild the depth counters from the jobs table; every (queue, state)
        with its true count and how far the counters were off."""
        rows = await self.connector.fetch(QUERIES["recount_jobs"])
        return [CountDrift.from_row(row) for row in rows]

    async def release_incarnations(
        self,
        deaths: Sequence[tuple[str, str]],
        backoff_seconds: float = RESCUE_BACKOFF_SECONDS,
        backoff_cap_seconds: float = RESCUE_BACKOFF_CAP_SECONDS,
    ) -> ReapResult:
        """Mark the (worker id, why) incarnations dead and release their running jobs,
        fenced on the worker id: a worker already gone from online/draining is left alone.
        Released jobs keep their place in line unless rescued before (as the rescue)."""
        row = await self.connector.fetchrow(
            QUERIES["release_incarnations"],
            [worker_id for worker_id, _ in deaths],
            [why for _, why in deaths],
            models.validate_seconds(backoff_seconds, "backoff_seconds"),
            models.validate_seconds(backoff_cap_seconds, "backoff_cap_seconds"),
        )
        assert row is not None  # scalar subqueries always return one row
        return ReapResult(
            workers=len(row["worker_ids"]),
            jobs_released=row["jobs_released"],
            jobs_dead=row["jobs_dead"],
            worker_ids=tuple(row["worker_ids"]),
        )

    async def prune_finished(
        self,
        older_than_seconds: float,
        states: Sequence[str] = models.FINISHED_STATES,
        *,
        queues: Sequence[str] | None = None,
        batch_rows: int = PRUNE_BATCH_ROWS,
    ) -> int:
        """Delete finished jobs of ``queues`` (None: all) older than the age, one
        committed batch of ``batch_rows`` at a time; returns how many."""
        for index, state in enumerate(states):
            if state not in models.FINISHED_STATES:
                raise models.InvalidJobError(
                    f"states[{index}]",
                    f"{state!r} is not a finished state: use {models.FINISHED_STATES}",
                )
        age = models.validate_seconds(older_than_seconds, "older_than_seconds")
        scope = _optional_names(queues, "queues")
        limit = _validate_batch(batch_rows)
        total = 0
        while True:
            deleted = int(
                await self.connector.fetchval(
                    QUERIES["prune_finished"], age, list(states), limit, scope
                )
            )
            total += deleted
            if deleted < limit:
                return total

    async def prune_failure_counts(
        self, older_than_seconds: float = FAILURE_COUNTS_KEEP_SECONDS
    ) -> int:
        """Delete per-minute failure counts older than the age (default: past the stats' hour)."""
        age = models.validate_seconds(older_than_seconds, "older_than_seconds")
        return int(await self.connector.fetchval(QUERIES["prune_failure_counts"], age))

    async def prune_workers(self, older_than_seconds: float) -> int:
        age = models.validate_seconds(older_than_seconds, "older_than_seconds")
        return int(await self.connector.fetchval(QUERIES["prune_workers"], age))

    # -- schedules -----------------------------------------------------------

    async def register_schedules(
        self,
        pool: str,
        source: str,
        definitions: Sequence[models.ScheduleDefinition],
        next_runs: Sequence[datetime],
        now: datetime,
    ) -> list[models.Registration]:
        """Make ``pool``'s schedules of ``source`` exactly ``definitions``; one result each."""
        rows = await self.connector.fetch(
            QUERIES["schedules_register"],
            pool,
            source,
            [d.name for d in definitions],
            [d.queue for d in definitions],
            [d.task for d in definitions],
            [d.cron for d in definitions],
            [d.time_zone for d in definitions],
            [jsonb_text(d.payload, "payload") for d in definitions],
            [d.priority for d in definitions],
            [d.max_attempts for d in definitions],
            [d.starting_deadline_seconds for d in definitions],
            [d.suspended for d in definitions],
            list(next_runs),
            now,
        )
        return [
            models.Registration(
                name=row["name"], written=row["written"], held_by=row["held_by"], source=source
            )
            for row in rows
        ]

    async def list_schedules(self, pool: str | None = None) -> list[ScheduleRow]:
        rows = await self.connector.fetch(QUERIES["schedules_list"], pool)
        return [ScheduleRow.from_row(row) for row in rows]

    async def advance_schedule(
        self,
        row: ScheduleRow,
        run_at: datetime | None,
        missed: int,
        latest_missed: datetime | None,
        next_run: datetime | None,
        history_seconds: float,
    ) -> models.Advance:
        """Enqueue the run at ``run_at`` and count ``missed`` skipped runs, once (see the query)."""
        result = await self.connector.fetchrow(
            QUERIES["schedule_advance"],
            row.pool,
            row.name,
            row.source,
            run_at,
            missed,
            latest_missed,
            next_run,
            models.validate_seconds(history_seconds, "history_seconds"),
        )
        assert result is not None  # scalar subqueries always return one row
        return models.Advance(advanced=result["advanced"], job_id=result["job_id"])

    async def schedule_runs(self, pool: str, schedule: str, limit: int = 20) -> list[ScheduleRun]:
        rows = await self.connector.fetch(QUERIES["schedule_runs"], pool, schedule, limit)
        return [ScheduleRun.from_row(row) for row in rows]

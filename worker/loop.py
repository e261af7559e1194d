"""The job loop: claim in batches up to the free slots, run, record the end.

No SQL here: every database call is one Repository method. Two stop scopes:
``stop_fetching`` ends claiming; ``drain`` then waits up to the grace period
and cancels what still runs, and each cancelled job releases itself back to
pending. Writes that record a job's end are shielded from cancellation, so a
job that finished is never released (nor run twice because of a shutdown).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from workerfleet.worker import connector, handlers, retry, tasks, tracing
from workerfleet.worker.config import WorkerSettings
from workerfleet.worker.health import JobKey, RunningJob, RuntimeState
from workerfleet.worker.json_values import jsonb_text
from workerfleet.worker.logging_setup import LOGGER_NAME, BoundLogger, bind
from workerfleet.worker.metrics import WorkerMetrics
from workerfleet.worker.models import Job, JobRef
from workerfleet.worker.repository import Repository

T = TypeVar("T")

CLAIM_COOLDOWN_SECONDS = 0.005
# A database that stops answering (rather than refusing) must not wedge the loop.
CLAIM_TIMEOUT_SECONDS = 10.0
# How long a finished job keeps trying to record its end (the heartbeat keeps its
# lease meanwhile): long enough to ride out a database restart or a minute's
# outage. Past it the job leaves this worker, its lease runs out and the recovery
# runs it again (at least once).
RECORD_END_MIN_DEADLINE_SECONDS = 120.0


log = logging.getLogger(LOGGER_NAME + ".loop")


class JobTimedOutError(Exception):
    """The job ran past its timeout and was cancelled."""


def queue_wait_seconds(job: Job) -> float | None:
    """Time from when the job became runnable (enqueue or run_at) to its start."""
    if job.started_at is None:
        return None
    runnable = max(job.run_at, job.created_at)
    return max(0.0, (job.started_at - runnable).total_seconds())


async def shielded(operation: Awaitable[T]) -> T:
    """Run ``operation`` to the end even if the caller is cancelled meanwhile.

    The cancellation is delivered once the operation has finished.
    """
    inner = asyncio.ensure_future(operation)
    try:
        return await asyncio.shield(inner)
    except asyncio.CancelledError:
        if not inner.done():
            await asyncio.wait([inner])
        raise


class JobLoop:
    def __init__(
        self,
        settings: WorkerSettings,
        repository: Repository,
        handler: handlers.Handler,
        metrics: WorkerMetrics,
        state: RuntimeState,
    ) -> None:
        self.settings = settings
        self.repository = repository
        self.handler = handler
        self.metrics = metrics
        self.state = state
        self.stop_fetching = asyncio.Event()
        # Set while the operator's drain request holds claims (see hold_claims).
        self.claims_held = False
        self._wake = asyncio.Event()
        self._tasks: dict[JobKey, asyncio.Task[None]] = {}
        # Jobs whose end is being written: a heartbeat that misses them raced that write.
        self._ending: set[JobKey] = set()
        self._claim_backoff = connector.reconnect_backoff()

    # -- waking and stopping -------------------------------------------------

    def wake(self) -> None:
        """Claim now (a NOTIFY arrived, a slot freed up, or stop was requested)."""
        self._wake.set()

    def request_stop(self) -> None:
        self.stop_fetching.set()
        self._wake.set()

    def hold_claims(self) -> None:
        """Claim nothing until :meth:`resume_claims` (a drain the operator asked for):
        running jobs go on; the database refuses this worker's claims meanwhile anyway."""
        self.claims_held = True

    def resume_claims(self) -> None:
        self.claims_held = False
        self._wake.set()

    @property
    def running_count(self) -> int:
        return len(self._tasks)

    async def _sleep(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass

    # -- fetching ------------------------------------------------------------

    async def fetch_until_stopped(self) -> None:
        """Claim and start jobs until ``stop_fetching`` is set."""
        while not self.stop_fetching.is_set():
            self.state.last_loop_tick = time.monotonic()
            free = self.settings.concurrency - len(self._tasks)
            self._wake.clear()
            if free <= 0 or self.claims_held:
                await self._sleep(self.settings.poll_interval)
                continue
            if free < self.settings.concurrency / 2:
                # Busy: let a few more slots free up so one claim fills several of them,
                # instead of one round trip per finished job.
                await asyncio.sleep(CLAIM_COOLDOWN_SECONDS)
                free = self.settings.concurrency - len(self._tasks)
            jobs = await self._claim(free)
            if jobs is None:
                await self._sleep(self._claim_backoff.next_delay())
                continue
            for job in jobs:
                self._start(job)
            if len(jobs) < free:
                # A short batch means the queue is empty for now: wait for a NOTIFY,
                # a freed slot or the poll interval. A full batch: claim again at once.
                await self._sleep(self.settings.poll_interval)

    async def _claim(self, limit: int) -> list[Job] | None:
        started = time.monotonic()
        try:
            async with asyncio.timeout(CLAIM_TIMEOUT_SECONDS):
                jobs = await self.repository.claim(
                    self.state.worker_id,
                    self.settings.queues,
                    limit,
                    self.settings.lease_seconds,
                    default_max_attempts=self.settings.max_attempts,
                )
        except Exception as exc:  # the loop must outlive any database trouble
            self.record_database_failure("claim", exc)
            return None
        self.metrics.claim_duration.observe(time.monotonic() - started)
        self.record_database_ok()
        self._claim_backoff.reset()
        for queue in {job.queue for job in jobs}:
            claimed = sum(1 for job in jobs if job.queue == queue)
            self.metrics.count_claimed(queue, claimed)
        return jobs

    def record_database_ok(self) -> None:
        if self.state.database.connected is False:
            log.info("database reachable again")
        self.state.database_ok(dt.datetime.now(dt.UTC))
        self.metrics.database_up.set(1)

    def record_database_failure(self, operation: str, exc: BaseException) -> None:
        self.metrics.database_errors.labels(operation=operation).inc()
        kind = connector.classify_error(exc)
        if kind == "conflict":
            # The server broke a lock conflict: the database itself is fine.
            self.metrics.database_conflicts.labels(operation=operation).inc()
            log.warning(
                "database conflict (deadlock or serialization failure)",
                extra={"operation": operation, "error": connector.describe_error(exc)},
            )
            return
        was_connected = self.state.database.connected is not False
        self.state.database_failed(dt.datetime.now(dt.UTC), exc)
        self.metrics.database_up.set(0)
        if kind == "unexpected":
            log.error("database call failed", extra={"operation": operation}, exc_info=exc)
        elif was_connected:
            log.warning(
                "database unreachable; retrying with backoff",
                extra={"operation": operation, "error": connector.describe_error(exc)},
            )

    def _start(self, job: Job) -> None:
        key = (job.id, job.attempt)
        for other in list(self.state.running.values()):
            if other.job_id == job.id and other.attempt < job.attempt:
                # We were given this job again: our older run of it lost its claim.
                self._note_fenced((other.job_id, other.attempt))
        task = asyncio.create_task(self._run(job), name=f"job-{job.id}-{job.attempt}")
        self._tasks[key] = task
        task.add_done_callback(lambda done: self._finished(key, done))

    def _finished(self, key: JobKey, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            # Not a job failure (those are recorded): the runtime itself broke while
            # recording one. The lease is no longer extended, so the recovery re-runs it.
            log.error(
                "could not record a job's outcome",
                extra={"job_id": key[0], "attempt": key[1]},
                exc_info=task.exception(),
            )
        self._tasks.pop(key, None)
        self.metrics.current_jobs.set(len(self._tasks))
        self._wake.set()

    def _note_fenced(self, key: JobKey) -> None:
        if key in self._ending:
            return  # the write itself will tell (and count) whether we still held it
        if key not in self.state.fenced_ids and key in self.state.running:
            self.state.fenced_ids.add(key)
            log.warning(
                "job was taken away from this worker; its outcome will be dropped",
                extra={"job_id": key[0], "attempt": key[1]},
            )

    def note_fenced(self, keys: Sequence[JobKey]) -> None:
        """The heartbeat found these running jobs no longer held by us."""
        for key in keys:
            self._note_fenced(key)

    # -- running one job -----------------------------------------------------

    async def _run(self, job: Job) -> None:
        key = (job.id, job.attempt)
        ref = JobRef(id=job.id, worker_id=self.state.worker_id, attempt=job.attempt)
        logger = bind(
            logging.getLogger(LOGGER_NAME + ".job"),
            {"job_id": job.id, "queue": job.queue, "task": job.task, "attempt": job.attempt},
        )
        started = time.monotonic()
        self.state.running[key] = RunningJob(
            job_id=job.id,
            attempt=job.attempt,
            queue=job.queue,
            task=job.task,
            started_at=job.started_at or dt.datetime.now(dt.UTC),
            started_monotonic=started,
        )
        self.metrics.current_jobs.set(len(self._tasks))
        self.metrics.count("started", job.queue, job.task)
        wait = queue_wait_seconds(job)
        if wait is not None:
            self.metrics.observe_queue_wait(job.queue, job.task, wait)
        logger.debug("job started", extra={"queue_wait_seconds": wait})
        try:
            with tracing.job_span(job, self.state.worker_id):
                await self._execute(job, ref, logger, started)
        finally:
            self.state.running.pop(key, None)
            self.state.fenced_ids.discard(key)
            self._ending.discard(key)

    async def _execute(self, job: Job, ref: JobRef, logger: BoundLogger, started: float) -> None:
        context = tasks.JobContext(
            job_id=job.id,
            attempt=job.attempt,
            max_attempts=job.max_attempts or self.settings.max_attempts,  # set by the claim
            queue=job.queue,
            task=job.task,
            worker_id=self.state.worker_id,
            logger=logger,
        )
        try:
            result = await self._call_handler(context, job.payload)
            jsonb_text(result, "result")  # a result the database cannot store fails the job here
        except asyncio.CancelledError:
            await shielded(self._release(job, ref, logger, started))
            raise
        except (handlers.UnknownTaskError, tasks.PermanentError) as exc:
            await shielded(self._fail(job, ref, logger, started, exc, permanent=True))
        except Exception as exc:
            await shielded(self._fail(job, ref, logger, started, exc, permanent=False))
        else:
            await shielded(self._complete(job, ref, logger, started, result))

    async def _call_handler(self, context: tasks.JobContext, payload: Any) -> Any:
        timeout = self.handler.timeout_for(context.task) or self.settings.job_timeout
        try:
            async with asyncio.timeout(timeout) as scope:
                return await self.handler.run(context, payload)
        except TimeoutError:
            if scope.expired():
                raise JobTimedOutError(
                    f"job timed out after {timeout:g}s (task {context.task!r}; raise the "
                    "task's timeout= or WORKERFLEET_JOB_TIMEOUT if it needs longer)"
                ) from None
            raise

    def _dropped_as_fenced(self, job: Job, logger: BoundLogger, started: float) -> None:
        tracing.set_outcome("fenced")
        self.state.counts.fenced += 1
        self.metrics.count("fenced", job.queue, job.task)
        self.metrics.observe_duration(job.queue, job.task, "fenced", time.monotonic() - started)
        logger.warning("outcome dropped: the job was taken away from this worker (fenced)")

    async def _complete(
        self, job: Job, ref: JobRef, logger: BoundLogger, started: float, result: Any
    ) -> None:
        if (job.id, job.attempt) in self.state.fenced_ids:
            self._dropped_as_fenced(job, logger, started)
            return
        recorded = await self._record_end(
            (job.id, job.attempt), "complete", lambda: self.repository.complete(ref, result)
        )
        if recorded is None:
            return
        duration = time.monotonic() - started
        if not recorded:
            self._dropped_as_fenced(job, logger, started)
            return
        tracing.set_outcome("succeeded")
        self.state.counts.succeeded += 1
        self.metrics.count("succeeded", job.queue, job.task)
        self.metrics.observe_duration(job.queue, job.task, "succeeded", duration)
        logger.info("job succeeded", extra={"duration_seconds": round(duration, 6)})

    async def _fail(
        self,
        job: Job,
        ref: JobRef,
        logger: BoundLogger,
        started: float,
        exc: BaseException,
        *,
        permanent: bool,
    ) -> None:
        if (job.id, job.attempt) in self.state.fenced_ids:
            self._dropped_as_fenced(job, logger, started)
            return
        error = connector.describe_error(exc)
        tracing.record_error(exc, error)
        trace = "".join(traceback.format_exception(exc))
        delay = retry.backoff_seconds(
            job.attempt,
            self.settings.retry_base,
            self.settings.retry_cap,
            self.settings.retry_jitter,
        )
        outcome = await self._record_end(
            (job.id, job.attempt),
            "fail",
            lambda: self._write_failure(ref, error, trace, delay, permanent),
        )
        if outcome is None:
            return
        duration = time.monotonic() - started
        if outcome == "fenced":
            self._dropped_as_fenced(job, logger, started)
            return
        tracing.set_outcome(outcome)
        self.state.counts.failed += 1
        self.metrics.count("failed", job.queue, job.task)
        self.metrics.observe_duration(job.queue, job.task, outcome, duration)
        fields = {"error": error, "duration_seconds": round(duration, 6)}
        if outcome == "retried":
            self.state.counts.retried += 1
            self.metrics.count("retried", job.queue, job.task)
            logger.warning("job failed; retrying", extra={**fields, "retry_in_seconds": delay})
        else:
            self.state.counts.dead += 1
            self.metrics.count("dead", job.queue, job.task)
            logger.error("job failed; dead-lettered", extra=fields)

    async def _write_failure(
        self, ref: JobRef, error: str, trace: str, delay: float, permanent: bool
    ) -> str:
        if permanent:
            return await self.repository.bury(ref, error, trace)
        return await self.repository.fail(ref, error, trace, delay)

    async def _release(self, job: Job, ref: JobRef, logger: BoundLogger, started: float) -> None:
        if (job.id, job.attempt) in self.state.fenced_ids:
            self._dropped_as_fenced(job, logger, started)
            return
        released = await self._record_end(
            (job.id, job.attempt), "release", lambda: self.repository.release(ref)
        )
        if released is None:
            return
        if not released:
            self._dropped_as_fenced(job, logger, started)
            return
        tracing.set_outcome("released")
        self.state.counts.released += 1
        self.metrics.count("released", job.queue, job.task)
        self.metrics.observe_duration(job.queue, job.task, "released", time.monotonic() - started)
        logger.warning("job released back to pending: the shutdown grace period ended")

    async def _record_end(
        self, key: JobKey, operation: str, write: Callable[[], Awaitable[T]]
    ) -> T | None:
        """``write()`` until it lands (its result, which says whether we were fenced);
        None = gave up at the deadline.

        Every error is retried: a conflict at once, anything else after a backoff
        (on a fresh connection when the old one broke). The job stays in
        ``state.running`` meanwhile, so the heartbeat keeps extending its lease.
        """
        self._ending.add(key)
        deadline = time.monotonic() + max(
            self.settings.lease_seconds, RECORD_END_MIN_DEADLINE_SECONDS
        )
        backoff = connector.reconnect_backoff()
        while True:
            try:
                outcome = await write()  # a hung server is cut off by the pool's command timeout
            except Exception as exc:
                self.record_database_failure(operation, exc)
                if time.monotonic() >= deadline:
                    log.error(
                        "could not record the job's end; its lease will expire and "
                        "the recovery will run it again",
                        extra={"operation": operation, "error": connector.describe_error(exc)},
                    )
                    return None
                if connector.classify_error(exc) != "conflict":
                    await asyncio.sleep(backoff.next_delay())
                continue
            self.record_database_ok()
            return outcome

    # -- draining ------------------------------------------------------------

    async def drain(self, grace_seconds: float, force: asyncio.Event) -> None:
        """Let running jobs finish within the grace period, then release the rest.

        ``force`` (a second signal) ends the wait early.
        """
        running = list(self._tasks.values())
        if running:
            log.info(
                "draining: waiting for running jobs",
                extra={"running": len(running), "grace_seconds": grace_seconds},
            )
            forced = asyncio.ensure_future(force.wait())
            everything = asyncio.ensure_future(asyncio.wait(running, timeout=grace_seconds))
            await asyncio.wait({forced, everything}, return_when=asyncio.FIRST_COMPLETED)
            forced.cancel()
            everything.cancel()
        leftover = [task for task in self._tasks.values() if not task.done()]
        if leftover:
            log.warning(
                "grace period over: cancelling and releasing running jobs",
                extra={"jobs": len(leftover)},
            )
            for task in leftover:
                task.cancel()
            await asyncio.wait(leftover)

"""``workerfleet-worker``: the process that runs in every worker pod.

Start: configuration -> logging -> handlers -> probe server -> database
(retried with backoff; migrations unless disabled) -> register -> the job loop
and its supervised side tasks (heartbeat, LISTEN, health log, the fallback
rescue of expired leases). If any of them
dies, the worker drains and exits non-zero rather than limping on.

Stop (SIGTERM/SIGINT): stop claiming, turn unready (state ``draining``), let
running jobs finish within the grace period, release the rest, mark the
worker ``offline``, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import logging
import os
import sys
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg

from workerfleet.worker import (
    config,
    connector,
    handlers,
    health,
    migrations,
    scheduler,
    tasks,
    tracing,
)
from workerfleet.worker.heartbeat import Heartbeat
from workerfleet.worker.http_server import Endpoints, HealthServer
from workerfleet.worker.listener import Listener
from workerfleet.worker.logging_setup import LOGGER_NAME, configure_logging
from workerfleet.worker.loop import JobLoop
from workerfleet.worker.metrics import WorkerMetrics
from workerfleet.worker.repository import Repository
from workerfleet.worker.rescuer import FallbackRescuer
from workerfleet.worker.signals import StopSignals

EXIT_OK = 0
EXIT_CONFIG = 1  # bad configuration, handlers that cannot load, port taken
EXIT_FAILED = 2  # a side task died or the job loop crashed
POOL_EXTRA_CONNECTIONS = 3  # claim, heartbeat, stats beside one per running job
POOL_MAX_CONNECTIONS = 20
THREADS_EXTRA = 4  # sync task functions beside the job slots
STATS_CACHE_SECONDS = 5.0
STATS_TIMEOUT_SECONDS = 5.0
STATE_WRITE_TIMEOUT_SECONDS = 5.0
SIDE_TASK_STOP_TIMEOUT_SECONDS = 10.0

log = logging.getLogger(LOGGER_NAME)


def package_version() -> str:
    try:
        return importlib.metadata.version("workerfleet")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


class WorkerProcess:
    def __init__(self, settings: config.WorkerSettings, handler: handlers.Handler) -> None:
        self.settings = settings
        self.handler = handler
        self.version = package_version()
        self.metrics = WorkerMetrics()
        self.state = health.RuntimeState(
            worker_id=config.new_worker_id(settings),
            started_at=dt.datetime.now(dt.UTC),
            started_monotonic=time.monotonic(),
            concurrency=settings.concurrency,
        )
        self.stop_requested = asyncio.Event()
        self.force = asyncio.Event()
        self.side_stop = asyncio.Event()
        self.connector: connector.Connector | None = None
        self.repository: Repository | None = None
        self.job_loop: JobLoop | None = None
        self._stats_lock = asyncio.Lock()
        self._stats_checked = 0.0

    # -- stop ------------------------------------------------------------------

    def request_stop(self) -> None:
        if self.state.phase in ("running", "starting"):
            self.state.phase = "draining" if self.state.phase == "running" else "stopped"
        self.metrics.draining.set(1)
        self.stop_requested.set()
        if self.job_loop is not None:
            self.job_loop.request_stop()

    def _worker_state_seen(self, worker_state: str | None) -> None:
        """Follow the operator's drain request, as the heartbeat read it from our row.

        Asked: claim nothing more and turn unready, finishing what runs; the pod is
        deleted next (SIGTERM drains as usual). Taken back: claim again.
        """
        if self.job_loop is None or self.state.phase != "running":
            return  # a shutdown of our own already stopped claiming for good
        asked = worker_state == "draining"
        if asked == self.state.drain_requested:
            return
        self.state.drain_requested = asked
        self.metrics.draining.set(1 if asked else 0)
        if asked:
            self.job_loop.hold_claims()
            log.info(
                "the operator asked for a drain (scale-in): claiming nothing more, unready",
                extra={"running": self.job_loop.running_count},
            )
        else:
            self.job_loop.resume_claims()
            log.info("the operator took its drain request back: claiming again")

    # -- probes ----------------------------------------------------------------

    def liveness(self) -> health.Verdict:
        return health.liveness(
            self.state,
            time.monotonic(),
            self.settings.poll_interval,
            self.settings.heartbeat_interval,
        )

    def readiness(self) -> health.Verdict:
        verdict = health.readiness(self.state)
        self.metrics.ready.set(1 if verdict.ok else 0)
        return verdict

    async def report(self) -> tuple[int, dict[str, Any]]:
        await self._refresh_queue_stats()
        context = health.ReportContext(
            now=dt.datetime.now(dt.UTC),
            now_monotonic=time.monotonic(),
            pool=self.settings.pool,
            queues=self.settings.queues,
            version=self.version,
            config=self.settings.public_view(),
            memory=health.read_memory_usage(),
            environment=health.environment_facts(),
            poll_interval=self.settings.poll_interval,
            heartbeat_interval=self.settings.heartbeat_interval,
        )
        return health.build_report(self.state, context)

    async def _refresh_queue_stats(self) -> None:
        """Queue stats for /health and the health log, at most every few seconds."""
        if self.repository is None or self.job_loop is None:
            return
        async with self._stats_lock:
            if time.monotonic() - self._stats_checked < STATS_CACHE_SECONDS:
                return
            self._stats_checked = time.monotonic()
            try:
                async with asyncio.timeout(STATS_TIMEOUT_SECONDS):
                    stats = await self.repository.queue_stats()
            except Exception as exc:
                self.job_loop.record_database_failure("queue_stats", exc)
                return
            self.job_loop.record_database_ok()
            self.state.queue_stats = [row for row in stats if row.queue in self.settings.queues]
            self.state.queue_stats_at = dt.datetime.now(dt.UTC)

    # -- start -----------------------------------------------------------------

    async def _connect(self) -> bool:
        """Open the pool, migrate, register; retried until it works or stop is asked."""
        backoff = connector.reconnect_backoff()
        while not self.stop_requested.is_set():
            opened: connector.Connector | None = None
            try:
                opened = await connector.Connector.open(
                    self.settings.dsn, min_size=1, max_size=self._pool_size()
                )
                if self.settings.migrate:
                    applied = await migrations.migrate(opened)
                    if applied:
                        log.info("migrations applied", extra={"versions": applied})
                repository = Repository(opened)
                await repository.register_worker(
                    self.state.worker_id,
                    self.settings.pool,
                    list(self.settings.queues),
                    self.settings.pod_name,
                    self.version,
                )
            except connector.TRANSIENT_ERRORS as exc:
                if opened is not None:
                    with contextlib.suppress(Exception):
                        await opened.close()
                self.state.database_failed(dt.datetime.now(dt.UTC), exc)
                self.metrics.database_up.set(0)
                delay = backoff.next_delay()
                log.warning(
                    "database unreachable at start; retrying",
                    extra={"error": connector.describe_error(exc), "retry_in_seconds": delay},
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self.stop_requested.wait()
                continue
            except BaseException:
                if opened is not None:
                    with contextlib.suppress(Exception):
                        await opened.close()
                raise
            self.connector, self.repository = opened, repository
            self.state.database_ok(dt.datetime.now(dt.UTC))
            self.metrics.database_up.set(1)
            return True
        return False

    def _pool_size(self) -> int:
        return min(self.settings.concurrency + POOL_EXTRA_CONNECTIONS, POOL_MAX_CONNECTIONS)

    # -- run -------------------------------------------------------------------

    async def run(self) -> int:
        running_loop = asyncio.get_running_loop()
        running_loop.set_default_executor(
            ThreadPoolExecutor(
                max_workers=self.settings.concurrency + THREADS_EXTRA, thread_name_prefix="task"
            )
        )
        stop_signals = StopSignals(self.request_stop, self.force.set)
        uninstall = stop_signals.install(running_loop)
        self.metrics.concurrency.set(self.settings.concurrency)
        self.metrics.info.info(
            {"worker_id": self.state.worker_id, "pool": self.settings.pool, "version": self.version}
        )
        self.metrics.bind_heartbeat_age(self._heartbeat_age)
        server = HealthServer(
            self.settings.bind_host,
            self.settings.health_port,
            Endpoints(self.liveness, self.readiness, self.report, self.metrics.exposition),
        )
        try:
            await server.start()
        except OSError as exc:
            log.error(
                "cannot serve probes: set WORKERFLEET_HEALTH_HOST / WORKERFLEET_HEALTH_PORT",
                extra={"host": self.settings.bind_host, "port": self.settings.health_port,
                       "error": connector.describe_error(exc)},
            )  # fmt: skip
            uninstall()
            return EXIT_CONFIG
        try:
            return await self._run_connected()
        finally:
            await server.close()
            uninstall()

    async def _run_connected(self) -> int:
        log.info(
            "worker starting",
            extra={"worker_id": self.state.worker_id, "version": self.version,
                   "config": self.settings.public_view()},
        )  # fmt: skip
        try:
            if not await self._connect():
                self.state.phase = "stopped"
                log.info("stopped before the database became reachable")
                return EXIT_OK
        except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError) as exc:
            log.error(
                "the queue schema is missing: run `workerfleet db migrate`, or leave "
                "WORKERFLEET_MIGRATE unset (true) so the worker applies it at start",
                extra={"error": connector.describe_error(exc)},
            )
            return EXIT_CONFIG
        except Exception as exc:
            log.error("cannot start", extra={"error": connector.describe_error(exc)}, exc_info=exc)
            return EXIT_CONFIG
        assert self.repository is not None
        assert self.connector is not None
        try:
            return await self._serve(self.repository)
        finally:
            await self.connector.close()

    async def _serve(self, repository: Repository) -> int:
        job_loop = JobLoop(self.settings, repository, self.handler, self.metrics, self.state)
        self.job_loop = job_loop
        heartbeat = Heartbeat(
            repository,
            self.state,
            job_loop,
            self.metrics,
            self.settings.heartbeat_interval,
            self.settings.lease_seconds,
            on_worker_state=self._worker_state_seen,
        )
        listener = Listener(
            self.settings.dsn,
            self.settings.queues,
            job_loop.wake,
            self.state,
            self.metrics,
            on_row_changed=heartbeat.wake,
        )
        if self.stop_requested.is_set():
            job_loop.request_stop()
        else:
            self.state.phase = "running"
        self.state.last_loop_tick = time.monotonic()
        self.state.last_heartbeat_tick = time.monotonic()
        log.info(
            "worker running",
            extra={"worker_id": self.state.worker_id, "queues": list(self.settings.queues),
                   "concurrency": self.settings.concurrency, "handlers": self.handler.description},
        )  # fmt: skip
        side: dict[asyncio.Task[None], str] = {
            _task(heartbeat.run(self.side_stop), "heartbeat"): "heartbeat",
            _task(listener.run(self.side_stop), "listener"): "listener",
            _task(self._health_log(), "health-log"): "health log",
        }
        if self.settings.rescue_interval > 0:
            rescuer = FallbackRescuer(
                repository,
                self.state,
                self.metrics,
                self.settings.rescue_interval,
                self.settings.lease_seconds,
            )
            side[_task(rescuer.run(self.side_stop), "fallback-rescue")] = "fallback rescue"
        schedules = self._scheduler(repository)
        if schedules is not None:
            side[_task(schedules.run(self.side_stop), "scheduler")] = "scheduler"
        fetch = _task(job_loop.fetch_until_stopped(), "fetch")
        stop_wait = _task(self.stop_requested.wait(), "stop-wait")
        done, _ = await asyncio.wait({fetch, stop_wait, *side}, return_when=asyncio.FIRST_COMPLETED)
        exit_code = EXIT_OK
        for finished in done - {stop_wait}:
            if finished is fetch and self.stop_requested.is_set():
                continue
            name = side.get(finished, "job loop")
            error = finished.exception() if not finished.cancelled() else None
            log.error(
                "a supervised task stopped unexpectedly; the worker stops",
                extra={
                    "task": name,
                    "error": connector.describe_error(error) if error else "returned",
                },
                exc_info=error,
            )
            exit_code = EXIT_FAILED
        self.request_stop()
        stop_wait.cancel()
        await self._drain(job_loop, repository, fetch, side)
        return exit_code

    def _scheduler(self, repository: Repository) -> scheduler.WorkerScheduler | None:
        """The scheduler side task, when the handlers module declares schedules."""
        if not isinstance(self.handler, handlers.ModuleHandler):
            return None
        declared = scheduler.definitions(self.handler.registry, self.settings.queues[0])
        if not declared:
            return None
        return scheduler.WorkerScheduler(
            self.settings.dsn, self.settings.pool, repository, declared
        )

    async def _drain(
        self,
        job_loop: JobLoop,
        repository: Repository,
        fetch: asyncio.Task[None],
        side: dict[asyncio.Task[None], str],
    ) -> None:
        log.info(
            "draining",
            extra={
                "running": job_loop.running_count,
                "grace_seconds": self.settings.shutdown_grace,
            },
        )
        await self._write_state(repository, "draining")
        with contextlib.suppress(Exception):
            await fetch
        # The heartbeat keeps running while draining: it extends the leases of the
        # jobs still finishing.
        await job_loop.drain(self.settings.shutdown_grace, self.force)
        self.side_stop.set()
        _, stuck = await asyncio.wait(side, timeout=SIDE_TASK_STOP_TIMEOUT_SECONDS)
        for task in stuck:
            task.cancel()
        self.state.phase = "stopped"
        await self._write_state(repository, "offline")
        log.info(
            "worker stopped",
            extra={"worker_id": self.state.worker_id, "jobs": vars(self.state.counts)},
        )

    async def _write_state(self, repository: Repository, state: str) -> None:
        try:
            async with asyncio.timeout(STATE_WRITE_TIMEOUT_SECONDS):
                await repository.set_worker_state(self.state.worker_id, state)
        except Exception as exc:
            log.warning(
                "could not record the worker state",
                extra={"state": state, "error": connector.describe_error(exc)},
            )

    async def _health_log(self) -> None:
        while not self.side_stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.health_log_interval):
                    await self.side_stop.wait()
            if self.side_stop.is_set():
                return
            _, body = await self.report()
            log.info("health", extra=health.health_log_fields(body))

    def _heartbeat_age(self) -> float:
        last = self.state.last_heartbeat_ok
        return time.monotonic() - (last if last is not None else self.state.started_monotonic)


def _task(coroutine: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
    return asyncio.create_task(coroutine, name=name)


def fail_to_start(message: str) -> None:
    print(f"workerfleet-worker: {message}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_CONFIG)


def main() -> None:
    try:
        settings = config.load_settings()
    except config.ConfigError as exc:
        fail_to_start(f"invalid configuration: {exc}")
        return
    configure_logging(settings.log_level, settings.log_format)
    try:
        handler = handlers.load_handler(settings.handlers)
    except (tasks.HandlerLoadError, tasks.TaskDefinitionError) as exc:
        fail_to_start(f"WORKERFLEET_HANDLERS={settings.handlers!r}: {exc}")
        return
    # After the handlers: a module that set up its own tracer provider keeps it.
    tracer_provider = tracing.configure_from_environment(os.environ)
    try:
        code = run_event_loop(settings.event_loop, WorkerProcess(settings, handler).run())
    finally:
        tracing.shutdown(tracer_provider)
    raise SystemExit(code)


def run_event_loop(kind: str, coroutine: Coroutine[Any, Any, int]) -> int:
    """Run the worker on uvloop (as asyncpg recommends), or on the standard loop."""
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError:  # a platform without uvloop wheels: the standard loop will do
            log.warning("uvloop is not installed; running on the asyncio event loop")
        else:
            return uvloop.run(coroutine)
    return asyncio.run(coroutine)


if __name__ == "__main__":
    main()

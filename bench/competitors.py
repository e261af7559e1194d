"""PgQueuer and procrastinate, driven the same way as workerfleet for the benchmark.

Runs inside the benchmark's own virtualenv (.bench/venv), never the project's:
neither library is a workerfleet dependency. Usage:

    competitors.py SYSTEM install|enqueue|prefill|worker|latency|depth [options]

SYSTEM is ``pgqueuer`` or ``procrastinate``; the database comes from $BENCH_DSN.
Every command but ``worker`` prints one JSON line; ``worker`` prints ``ready``
and runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from probes import latency_loop

QUEUE = "bench"


def dsn() -> str:
    return os.environ["BENCH_DSN"]


def emit(document: dict[str, Any]) -> None:
    print(json.dumps(document), flush=True)


def open_probe_file(path: str | None) -> TextIO | None:
    """Line-buffered, so each probe line is on disk as soon as it is written."""
    return open(path, "a", buffering=1) if path else None


def timed_runs(runs: int) -> Callable[[Callable[[], Awaitable[Any]]], Awaitable[list[float]]]:
    async def measure(call: Callable[[], Awaitable[Any]]) -> list[float]:
        await call()  # warm the plan and the connection
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            await call()
            times.append((time.perf_counter() - started) * 1000)
        return times

    return measure


# -- PgQueuer ------------------------------------------------------------------


async def pgqueuer_main(args: argparse.Namespace) -> None:
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries, QueueManager

    connection = await asyncpg.connect(dsn())
    queries = Queries(AsyncpgDriver(connection))
    if args.command == "install":
        await queries.install()
        emit({"installed": True})
    elif args.command == "enqueue":
        started = time.perf_counter()
        for _ in range(args.single):
            await queries.enqueue("noop", None, 0)
        single = args.single / (time.perf_counter() - started)
        started = time.perf_counter()
        for offset in range(0, args.batch, args.batch_size):
            size = min(args.batch_size, args.batch - offset)
            await queries.enqueue(["noop"] * size, [None] * size, [0] * size)
        batched = args.batch / (time.perf_counter() - started)
        emit({"single_per_second": single, "batch_per_second": batched})
    elif args.command == "prefill":
        for offset in range(0, args.count, 5_000):
            size = min(5_000, args.count - offset)
            await queries.enqueue(["noop"] * size, [None] * size, [0] * size)
        emit({"enqueued": args.count})
    elif args.command == "worker":
        manager = QueueManager(queries)
        probe = open_probe_file(args.probe_file)

        @manager.entrypoint("noop")
        async def noop(job: Any) -> None:
            return None

        @manager.entrypoint("probe")
        async def probe_job(job: Any) -> None:
            started = time.time()
            if probe is not None:
                probe.write(f"{job.payload.decode()} {started}\n")

        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, manager.shutdown.set)
        print("ready", flush=True)
        # Concurrency 16 as PgQueuer spells it: at most 16 jobs in flight,
        # fetched in batches of half that (it requires limit >= 2 x batch).
        await manager.run(
            batch_size=max(1, args.concurrency // 2), max_concurrent_tasks=args.concurrency
        )
    elif args.command == "latency":

        async def enqueue_probe(seq: int) -> None:
            await queries.enqueue("probe", str(seq).encode(), 0)

        latencies = await latency_loop(args.samples, Path(args.probe_file), enqueue_probe)
        emit({"latencies_ms": latencies})
    elif args.command == "depth":
        emit({"ms": await timed_runs(args.runs)(queries.queue_size)})
    await connection.close()


# -- procrastinate -------------------------------------------------------------


@dataclass(frozen=True)
class ProcrastinateBench:
    """The app and the two benchmark tasks registered on it."""

    app: Any
    noop: Any
    probe: Any


def procrastinate_app(probe_file: str | None) -> ProcrastinateBench:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn()))
    probe = open_probe_file(probe_file)

    @app.task(name="noop", queue=QUEUE)
    async def noop() -> None:
        return None

    @app.task(name="probe", queue=QUEUE)
    async def probe_job(seq: int) -> None:
        started = time.time()
        if probe is not None:
            probe.write(f"{seq} {started}\n")

    return ProcrastinateBench(app, noop, probe_job)


async def procrastinate_main(args: argparse.Namespace) -> None:
    bench = procrastinate_app(getattr(args, "probe_file", None))
    app, noop, probe = bench.app, bench.noop, bench.probe
    async with app.open_async():
        if args.command == "install":
            await app.schema_manager.apply_schema_async()
            emit({"installed": True})
        elif args.command == "enqueue":
            started = time.perf_counter()
            for _ in range(args.single):
                await noop.defer_async()
            single = args.single / (time.perf_counter() - started)
            started = time.perf_counter()
            for offset in range(0, args.batch, args.batch_size):
                size = min(args.batch_size, args.batch - offset)
                await noop.batch_defer_async(*([{}] * size))
            batched = args.batch / (time.perf_counter() - started)
            emit({"single_per_second": single, "batch_per_second": batched})
        elif args.command == "prefill":
            for offset in range(0, args.count, 5_000):
                size = min(5_000, args.count - offset)
                await noop.batch_defer_async(*([{}] * size))
            emit({"enqueued": args.count})
        elif args.command == "worker":
            print("ready", flush=True)
            await app.run_worker_async(queues=[QUEUE], concurrency=args.concurrency, wait=True)
        elif args.command == "latency":

            async def enqueue_probe(seq: int) -> None:
                await probe.defer_async(seq=seq)

            latencies = await latency_loop(args.samples, Path(args.probe_file), enqueue_probe)
            emit({"latencies_ms": latencies})
        elif args.command == "depth":
            emit({"ms": await timed_runs(args.runs)(app.job_manager.list_queues_async)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("system", choices=["pgqueuer", "procrastinate"])
    parser.add_argument(
        "command", choices=["install", "enqueue", "prefill", "worker", "latency", "depth"]
    )
    parser.add_argument("--single", type=int, default=1_000)
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=1_000)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--probe-file")
    args = parser.parse_args()
    if args.system == "pgqueuer":
        # As PgQueuer's own CLI (`pgq run`) runs it: on uvloop, one of its dependencies.
        import uvloop

        uvloop.run(pgqueuer_main(args))
    else:
        asyncio.run(procrastinate_main(args))


if __name__ == "__main__":
    main()

"""``make bench-worker``: workerfleet against PgQueuer and procrastinate, side by side.

One throwaway PostgreSQL, one database holding all three schemas, one run:

1. enqueue throughput, one job per call and batched;
2. processing throughput of no-op jobs with one worker process (concurrency
   16) and with two: workerfleet's real ``workerfleet-worker``, PgQueuer's
   QueueManager, procrastinate's worker (plus workerfleet's bare repository
   loop, to separate the queue's cost from the runtime's);
3. enqueue -> start latency (p50, p99) on an idle worker woken by NOTIFY;
4. the depth query with 1,000,000 pending and 1,000,000 finished jobs.

How each is measured, the same way for all three:
- throughput: workers start on an empty queue and report ready; the jobs are
  then enqueued in one batch; the rate is the jobs seen at the first poll
  divided by the time until none is pending or running (polled every 10 ms);
- latency: a ``probe`` handler writes its start time to a file; one probe is
  enqueued at a time on an idle worker; latency = start - the moment before
  the enqueue call (bench/probes.py);
- depth: each library's own depth/stats call after loading the rows with
  INSERT ... SELECT and VACUUM ANALYZE, timed from the client.
The machine is shared, so enqueue and throughput are the best of ``ROUNDS``
alternating rounds (each round is printed too).

PgQueuer and procrastinate are installed into ``.bench/venv`` (not project
dependencies) and driven by ``bench/competitors.py``. Prints figures; asserts
nothing. ``--phases`` runs a subset. Figures are also written to
``.bench/results.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
# Appended, not prepended: the repository's operator/ folder must not shadow the stdlib.
sys.path.append(str(REPO))

import asyncpg  # noqa: E402
from probes import latency_loop  # noqa: E402

from localcluster.loopback import free_port  # noqa: E402
from localcluster.postgres import PostgresServer  # noqa: E402
from workerfleet.worker.client import Client  # noqa: E402
from workerfleet.worker.migrations import migrate  # noqa: E402
from workerfleet.worker.models import EnqueueRequest  # noqa: E402
from workerfleet.worker.repository import Repository  # noqa: E402

STATE_DIR = REPO / ".bench"
BENCH_VENV = STATE_DIR / "venv"
RESULTS_FILE = STATE_DIR / "results.json"
COMPETITOR_PACKAGES = ("pgqueuer", "procrastinate", "psycopg[binary,pool]", "asyncpg")
PROJECT_BIN = Path(sys.executable).parent

ENQUEUE_SINGLE_JOBS = 2_000
ENQUEUE_BATCH_JOBS = 20_000
ENQUEUE_BATCH_SIZE = 1_000
PROCESS_JOBS = 20_000
# procrastinate drains a few hundred jobs a second here: fewer jobs keep the run short.
PROCESS_JOBS_BY_SYSTEM = {"procrastinate": 3_000}
# The machine is shared: each figure is the best of this many alternating rounds.
ROUNDS = 3
WORKER_CONCURRENCY = 16
LATENCY_SAMPLES = 300
DEPTH_ROWS = 1_000_000
DEPTH_QUEUES = 4
DEPTH_RUNS = 30
DRAIN_POLL_SECONDS = 0.01
DRAIN_TIMEOUT_SECONDS = 300.0
READY_TIMEOUT_SECONDS = 60.0
READY_GRACE_SECONDS = 1.5
STOP_TIMEOUT_SECONDS = 30.0
QUEUE = "bench"

TARGET_LATENCY_P50_MS = 5.0
TARGET_LATENCY_P99_MS = 25.0
TARGET_DEPTH_MS = 20.0

SYSTEMS = ("workerfleet", "pgqueuer", "procrastinate")

REMAINING_SQL = {
    "workerfleet": "SELECT count(*) FROM workerfleet.jobs WHERE state IN ('pending', 'running')",
    "repo-loop": "SELECT count(*) FROM workerfleet.jobs WHERE state IN ('pending', 'running')",
    "pgqueuer": "SELECT count(*) FROM pgqueuer",
    "procrastinate": ("SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"),
}
RESET_SQL = {
    "workerfleet": "TRUNCATE workerfleet.jobs, workerfleet.workers",
    "pgqueuer": "TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics",
    "procrastinate": "TRUNCATE procrastinate_jobs, procrastinate_workers CASCADE",
}
RESET_SQL["repo-loop"] = RESET_SQL["workerfleet"]

# 1M pending and 1M finished rows per system, spread over DEPTH_QUEUES queues;
# finished jobs over the last two hours, so "finished in the last minute" has work.
DEPTH_LOAD_SQL = {
    "workerfleet": [
        f"""INSERT INTO workerfleet.jobs (queue, task, payload)
        SELECT 'bench-' || (i % {DEPTH_QUEUES}), 'noop', '{{}}'
        FROM generate_series(1, {DEPTH_ROWS}) AS i""",
        f"""INSERT INTO workerfleet.jobs
            (queue, task, payload, state, attempt, started_at, finished_at, worker_id)
        SELECT 'bench-' || (i % {DEPTH_QUEUES}), 'noop', '{{}}', 'succeeded', 1,
            now() - interval '3 hours', now() - (i % 7200) * interval '1 second', 'w'
        FROM generate_series(1, {DEPTH_ROWS}) AS i""",
    ],
    "pgqueuer": [
        f"""INSERT INTO pgqueuer (priority, entrypoint, status)
        SELECT 0, 'noop-' || (i % {DEPTH_QUEUES}), 'queued'
        FROM generate_series(1, {DEPTH_ROWS}) AS i""",
        f"""INSERT INTO pgqueuer_log (job_id, status, priority, entrypoint, created)
        SELECT i, 'successful', 0, 'noop-' || (i % {DEPTH_QUEUES}),
            now() - (i % 7200) * interval '1 second'
        FROM generate_series(1, {DEPTH_ROWS}) AS i""",
    ],
    "procrastinate": [
        # Without procrastinate's per-row event triggers: its depth query reads only jobs.
        "SET session_replication_role = replica",
        f"""INSERT INTO procrastinate_jobs (queue_name, task_name, args, status)
        SELECT 'bench-' || (i % {DEPTH_QUEUES}), 'noop', '{{}}', 'todo'
        FROM generate_series(1, {DEPTH_ROWS}) AS i""",
        f"""INSERT INTO procrastinate_jobs (queue_name, task_name, args, status)
        SELECT 'bench-' || (i % {DEPTH_QUEUES}), 'noop', '{{}}', 'succeeded'
        FROM generate_series(1, {DEPTH_ROWS}) AS i""",
        "SET session_replication_role = DEFAULT",
    ],
}


@dataclass
class Results:
    versions: dict[str, str] = field(default_factory=dict)
    enqueue: dict[str, dict[str, float]] = field(default_factory=dict)
    throughput: dict[str, dict[int, float]] = field(default_factory=dict)
    latency: dict[str, dict[str, float]] = field(default_factory=dict)
    depth: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def say(message: str) -> None:
    print(message, flush=True)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


# -- the competitors' environment ------------------------------------------------


def ensure_bench_venv() -> Path:
    python = BENCH_VENV / "bin" / "python"
    marker = BENCH_VENV / ".packages"
    wanted = "\n".join(COMPETITOR_PACKAGES)
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    say(f"creating {BENCH_VENV} with {', '.join(COMPETITOR_PACKAGES)} ...")
    STATE_DIR.mkdir(exist_ok=True)
    # cwd outside the repository: its operator/ folder would shadow the stdlib module.
    subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True, cwd=STATE_DIR)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *COMPETITOR_PACKAGES],
        check=True,
        cwd=STATE_DIR,
    )
    marker.write_text(wanted)
    return python


def package_versions(python: Path) -> dict[str, str]:
    program = (
        "import importlib.metadata as m, json; "
        "print(json.dumps({p: m.version(p) for p in ('pgqueuer', 'procrastinate', 'psycopg')}))"
    )
    found: dict[str, str] = json.loads(
        subprocess.run(
            [str(python), "-c", program], check=True, capture_output=True, text=True, cwd=STATE_DIR
        ).stdout
    )
    return found


def competitor(python: Path, dsn: str, system: str, command: str, *args: str) -> dict[str, Any]:
    result = subprocess.run(
        [str(python), str(BENCH_DIR / "competitors.py"), system, command, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "BENCH_DSN": dsn},
        cwd=BENCH_DIR,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{system} {command} failed:\n{result.stderr[-3000:]}")
    document: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return document


# -- worker processes -----------------------------------------------------------


@dataclass
class WorkerProcesses:
    processes: list[subprocess.Popen[str]]
    logs: list[Path]


def start_workers(
    system: str, count: int, dsn: str, python: Path, probe_file: Path | None, log_dir: Path
) -> WorkerProcesses:
    processes, logs = [], []
    for index in range(count):
        log = log_dir / f"{system}-{index}-{time.monotonic_ns()}.log"
        env = {**os.environ, "BENCH_DSN": dsn}
        if probe_file is not None:
            env["BENCH_PROBE_FILE"] = str(probe_file)
        if system == "workerfleet":
            command = [str(PROJECT_BIN / "workerfleet-worker")]
            env.update(
                {
                    "WORKERFLEET_DSN": dsn,
                    "WORKERFLEET_QUEUES": QUEUE,
                    "WORKERFLEET_POOL": "bench",
                    "WORKERFLEET_HANDLERS": "wf_bench_tasks",
                    "WORKERFLEET_CONCURRENCY": str(WORKER_CONCURRENCY),
                    "WORKERFLEET_HEALTH_HOST": "127.0.0.1",
                    "WORKERFLEET_HEALTH_PORT": str(free_port()),
                    "WORKERFLEET_LOG_LEVEL": "WARNING",
                    "WORKERFLEET_MIGRATE": "false",
                    "POD_NAME": f"bench-{index}",
                    "PYTHONPATH": str(BENCH_DIR),
                }
            )
        elif system == "repo-loop":
            command = [
                sys.executable,
                str(BENCH_DIR / "repo_loop.py"),
                dsn,
                str(WORKER_CONCURRENCY),
            ]
        else:
            command = [
                str(python),
                str(BENCH_DIR / "competitors.py"),
                system,
                "worker",
                "--concurrency",
                str(WORKER_CONCURRENCY),
                *(["--probe-file", str(probe_file)] if probe_file else []),
            ]
        with log.open("w") as handle:
            processes.append(
                subprocess.Popen(
                    command,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=BENCH_DIR,
                    text=True,
                )
            )
        logs.append(log)
    return WorkerProcesses(processes, logs)


async def wait_ready(system: str, workers: WorkerProcesses, connection: asyncpg.Connection) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        for process, log in zip(workers.processes, workers.logs, strict=True):
            if process.poll() is not None:
                raise RuntimeError(f"{system} worker exited early:\n{log.read_text()[-3000:]}")
        if system == "workerfleet":
            online = await connection.fetchval(
                "SELECT count(*) FROM workerfleet.workers WHERE state = 'online'"
            )
            ready = online >= len(workers.processes)
        else:
            ready = all("ready" in log.read_text() for log in workers.logs)
        if ready:
            await asyncio.sleep(READY_GRACE_SECONDS)
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{system} workers not ready after {READY_TIMEOUT_SECONDS}s")


def stop_workers(workers: WorkerProcesses) -> None:
    for process in workers.processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in workers.processes:
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@asynccontextmanager
async def running_workers(
    system: str,
    count: int,
    dsn: str,
    python: Path,
    connection: asyncpg.Connection,
    log_dir: Path,
    probe_file: Path | None = None,
) -> Any:
    workers = start_workers(system, count, dsn, python, probe_file, log_dir)
    try:
        await wait_ready(system, workers, connection)
        yield workers
    finally:
        stop_workers(workers)


# -- measurements ---------------------------------------------------------------


async def measure_enqueue_workerfleet(dsn: str) -> dict[str, float]:
    async with await Client.connect(dsn) as client:
        started = time.perf_counter()
        for _ in range(ENQUEUE_SINGLE_JOBS):
            await client.enqueue(QUEUE, "noop")
        single = ENQUEUE_SINGLE_JOBS / (time.perf_counter() - started)
        started = time.perf_counter()
        for _ in range(0, ENQUEUE_BATCH_JOBS, ENQUEUE_BATCH_SIZE):
            await client.enqueue_many([EnqueueRequest(QUEUE, "noop")] * ENQUEUE_BATCH_SIZE)
        batched = ENQUEUE_BATCH_JOBS / (time.perf_counter() - started)
    return {"single_per_second": single, "batch_per_second": batched}


def process_jobs(system: str) -> int:
    return PROCESS_JOBS_BY_SYSTEM.get(system, PROCESS_JOBS)


async def prefill(system: str, dsn: str, python: Path) -> None:
    count = process_jobs(system)
    if system in ("workerfleet", "repo-loop"):
        async with await Client.connect(dsn) as client:
            await client.enqueue_many([EnqueueRequest(QUEUE, "noop")] * count)
    else:
        competitor(python, dsn, system, "prefill", "--count", str(count))


async def drain_rate(system: str, connection: asyncpg.Connection, fill: Awaitable[None]) -> float:
    """Jobs per second from the first moment jobs are seen until none remain."""
    query = REMAINING_SQL[system]
    filler = asyncio.ensure_future(fill)
    first_seen: tuple[float, int] | None = None
    deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        remaining = int(await connection.fetchval(query))
        now = time.perf_counter()
        if first_seen is None and remaining > 0:
            first_seen = (now, remaining)
        elif first_seen is not None and remaining == 0 and filler.done():
            await filler
            seen_at, seen_count = first_seen
            return seen_count / (now - seen_at)
        await asyncio.sleep(DRAIN_POLL_SECONDS)
    filler.cancel()
    raise RuntimeError(f"{system}: jobs still pending after {DRAIN_TIMEOUT_SECONDS}s")


async def measure_throughput(
    system: str, processes: int, dsn: str, python: Path, connection: asyncpg.Connection, logs: Path
) -> float:
    await connection.execute(RESET_SQL[system])
    async with running_workers(system, processes, dsn, python, connection, logs):
        rate = await drain_rate(system, connection, prefill(system, dsn, python))
    await connection.execute(RESET_SQL[system])
    return rate


async def measure_latency(
    system: str, dsn: str, python: Path, connection: asyncpg.Connection, logs: Path
) -> list[float]:
    await connection.execute(RESET_SQL[system])
    probe_file = Path(tempfile.mkstemp(prefix=f"probe-{system}-", dir=logs)[1])
    async with running_workers(system, 1, dsn, python, connection, logs, probe_file):
        if system == "workerfleet":
            async with await Client.connect(dsn) as client:

                async def enqueue_probe(seq: int) -> None:
                    await client.enqueue(QUEUE, "probe", {"seq": seq})

                latencies = await latency_loop(LATENCY_SAMPLES, probe_file, enqueue_probe)
        else:
            latencies = competitor(
                python, dsn, system, "latency",
                "--samples", str(LATENCY_SAMPLES), "--probe-file", str(probe_file),
            )["latencies_ms"]  # fmt: skip
    await connection.execute(RESET_SQL[system])
    return list(latencies)


async def load_depth_rows(system: str, connection: asyncpg.Connection) -> float:
    started = time.perf_counter()
    for statement in DEPTH_LOAD_SQL[system]:
        await connection.execute(statement)
    return time.perf_counter() - started


async def measure_depth_workerfleet(dsn: str) -> list[float]:
    async with await Client.connect(dsn) as client:
        repo = Repository(client.connector)
        await repo.queue_stats()
        times = []
        for _ in range(DEPTH_RUNS):
            started = time.perf_counter()
            await repo.queue_stats()
            times.append((time.perf_counter() - started) * 1000)
    return times


# -- the run --------------------------------------------------------------------


@dataclass
class Bench:
    python: Path
    dsn: str
    logs: Path
    connection: asyncpg.Connection
    results: Results


async def phase_enqueue(bench: Bench) -> None:
    say(f"\n== enqueue throughput (best of {ROUNDS} rounds) ==")
    best: dict[str, dict[str, float]] = {}
    for _ in range(ROUNDS):
        for system in SYSTEMS:
            if system == "workerfleet":
                figures = await measure_enqueue_workerfleet(bench.dsn)
            else:
                figures = competitor(
                    bench.python, bench.dsn, system, "enqueue",
                    "--single", str(ENQUEUE_SINGLE_JOBS), "--batch", str(ENQUEUE_BATCH_JOBS),
                    "--batch-size", str(ENQUEUE_BATCH_SIZE),
                )  # fmt: skip
            await bench.connection.execute(RESET_SQL[system])
            kept = best.setdefault(system, figures)
            for key, value in figures.items():
                kept[key] = max(kept[key], value)
    bench.results.enqueue = best
    for system in SYSTEMS:
        say(
            f"  {system:14} one by one {best[system]['single_per_second']:8.0f}/s   "
            f"batched {best[system]['batch_per_second']:8.0f}/s"
        )


async def phase_throughput(bench: Bench) -> None:
    say(
        f"\n== processing throughput, no-op jobs, concurrency {WORKER_CONCURRENCY} per process "
        f"(best of {ROUNDS} rounds) =="
    )
    systems = (*SYSTEMS, "repo-loop")
    rates: dict[str, dict[int, list[float]]] = {s: {1: [], 2: []} for s in systems}
    for _ in range(ROUNDS):
        for processes in (1, 2):
            for system in systems:
                rate = await measure_throughput(
                    system, processes, bench.dsn, bench.python, bench.connection, bench.logs
                )
                rates[system][processes].append(rate)
    for system in systems:
        bench.results.throughput[system] = {p: max(rates[system][p]) for p in (1, 2)}
        for processes in (1, 2):
            rounds = ", ".join(f"{rate:.0f}" for rate in rates[system][processes])
            say(
                f"  {system:14} {processes} process(es) "
                f"{bench.results.throughput[system][processes]:8.0f} jobs/s "
                f"({process_jobs(system)} jobs; rounds: {rounds})"
            )


async def phase_latency(bench: Bench) -> None:
    say(f"\n== enqueue -> start latency at idle, {LATENCY_SAMPLES} samples ==")
    for system in SYSTEMS:
        latencies = await measure_latency(
            system, bench.dsn, bench.python, bench.connection, bench.logs
        )
        figures = bench.results.latency[system] = {
            "p50_ms": percentile(latencies, 0.50),
            "p99_ms": percentile(latencies, 0.99),
            "max_ms": max(latencies),
        }
        say(
            f"  {system:14} p50 {figures['p50_ms']:7.2f} ms   p99 {figures['p99_ms']:7.2f} ms"
            f"   max {figures['max_ms']:7.2f} ms"
        )


async def phase_depth(bench: Bench) -> None:
    say(f"\n== depth query, {DEPTH_ROWS:,} pending + {DEPTH_ROWS:,} finished rows ==")
    for system in SYSTEMS:
        seconds = await load_depth_rows(system, bench.connection)
        say(f"  {system:14} loaded in {seconds:5.1f}s")
    await bench.connection.execute("VACUUM ANALYZE")
    depth_times = {"workerfleet": await measure_depth_workerfleet(bench.dsn)}
    for system in ("pgqueuer", "procrastinate"):
        depth_times[system] = competitor(
            bench.python, bench.dsn, system, "depth", "--runs", str(DEPTH_RUNS)
        )["ms"]
    for system in SYSTEMS:
        times = depth_times[system]
        figures = bench.results.depth[system] = {
            "median_ms": statistics.median(times),
            "p95_ms": percentile(times, 0.95),
        }
        say(
            f"  {system:14} median {figures['median_ms']:8.2f} ms   p95 {figures['p95_ms']:8.2f} ms"
        )


PHASES = {
    "enqueue": phase_enqueue,
    "throughput": phase_throughput,
    "latency": phase_latency,
    "depth": phase_depth,
}


async def run(python: Path, dsn: str, logs: Path, results: Results, phases: list[str]) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await migrate(dsn)
        for system in ("pgqueuer", "procrastinate"):
            competitor(python, dsn, system, "install")
        bench = Bench(python, dsn, logs, connection, results)
        for phase in phases:
            await PHASES[phase](bench)
    finally:
        await connection.close()


def summary(results: Results) -> None:
    wf = results
    say("\n== workerfleet vs the others (ratio > 1 means workerfleet is better) ==")
    for other in ("pgqueuer", "procrastinate"):
        if wf.throughput:
            for processes in (1, 2):
                ratio = wf.throughput["workerfleet"][processes] / wf.throughput[other][processes]
                say(f"  throughput, {processes} process(es), vs {other:13} {ratio:6.2f}x")
        if wf.enqueue:
            for kind in ("batch", "single"):
                key = f"{kind}_per_second"
                ratio = wf.enqueue["workerfleet"][key] / wf.enqueue[other][key]
                say(f"  {kind} enqueue vs {other:13}{' ' * (19 - len(kind))}{ratio:6.2f}x")
        if wf.latency:
            ratio = wf.latency[other]["p50_ms"] / wf.latency["workerfleet"]["p50_ms"]
            say(f"  latency p50 vs {other:13}                {ratio:6.2f}x")
        if wf.depth:
            ratio = wf.depth[other]["median_ms"] / wf.depth["workerfleet"]["median_ms"]
            say(f"  depth query vs {other:13}                {ratio:6.2f}x")

    say("\n== targets ==")
    checks: list[tuple[str, bool]] = []
    if wf.throughput:
        for processes in (1, 2):
            ratio = wf.throughput["workerfleet"][processes] / wf.throughput["pgqueuer"][processes]
            checks.append((f"throughput >= PgQueuer ({processes} process(es))", ratio >= 1.0))
    if wf.latency:
        checks.append(
            (
                f"enqueue -> start p50 <= {TARGET_LATENCY_P50_MS} ms",
                wf.latency["workerfleet"]["p50_ms"] <= TARGET_LATENCY_P50_MS,
            )
        )
        checks.append(
            (
                f"enqueue -> start p99 <= {TARGET_LATENCY_P99_MS} ms",
                wf.latency["workerfleet"]["p99_ms"] <= TARGET_LATENCY_P99_MS,
            )
        )
    if wf.depth:
        depth_ms = wf.depth["workerfleet"]["median_ms"]
        checks.append((f"depth <= {TARGET_DEPTH_MS} ms", depth_ms <= TARGET_DEPTH_MS))
    for name, met in checks:
        say(f"  {'met   ' if met else 'MISSED'} {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description="workerfleet queue benchmark (prints figures)")
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"comma list of {', '.join(PHASES)} (default: all, in that order)",
    )
    phases = [phase.strip() for phase in parser.parse_args().phases.split(",") if phase.strip()]
    unknown = sorted(set(phases) - set(PHASES))
    if unknown:
        parser.error(f"--phases: unknown {unknown}; choose from {list(PHASES)}")
    started = time.monotonic()
    python = ensure_bench_venv()
    results = Results(versions=package_versions(python))
    say(f"competitors: {results.versions}; {os.cpu_count()} CPUs")
    base = Path(tempfile.mkdtemp(prefix="workerfleet-bench-"))
    server = PostgresServer(base / "pg")
    server.start()
    try:
        dsn = server.create_database("bench")
        say(f"PostgreSQL {server.psql('SHOW server_version')} (fsync off) in {base}")
        logs = base / "logs"
        logs.mkdir()
        asyncio.run(run(python, dsn, logs, results, phases))
        summary(results)
    finally:
        server.destroy()
    STATE_DIR.mkdir(exist_ok=True)
    RESULTS_FILE.write_text(json.dumps(results.__dict__, indent=2, default=str))
    say(f"\nfigures written to {RESULTS_FILE}; whole run {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

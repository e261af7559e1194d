"""``make bench-scale``: how fast workerfleet sizes a pool from its queue, beside KEDA.

On the local cluster (real kube-apiserver, controller-manager, node agent running
worker pods as processes), one idle WorkerPool (replicas min 0, max 20,
jobsPerWorker 10, worker concurrency 10) and one-second jobs of the ``run_ledger``
tasks (every run written down, so a job run twice shows):

- burst: 1,000 jobs in one enqueue;
- ramp: 100 jobs/s for 30 s (10 jobs every 100 ms).

Each scenario runs with the default maxScaleUpStep (10 per 15 s) and with a step of
20 (= max: the burst goes through at once). Per run: seconds from the enqueue commit
to the Deployment's spec.replicas reaching its peak (20 unless the queue never asks
for it), to that many pods Ready, to the queue empty, and back to min once the
scale-down delay has passed; jobs run more than once (a scale-in that interrupted
one), drains that timed out, and the operator's reaction histogram
(workerfleet_operator_scale_reaction_seconds: NOTIFY to Deployment patch).

Beside each figure, KEDA's with its defaults (pollingInterval 30 s, HPA sync 15 s,
scale-up max(4 pods, 100 %) per 15 s, scale-down stabilization 300 s, cooldown
300 s), computed from its documented algorithm (``keda_model.py``; no KEDA runs
here), paying the same pod start time as measured here. Times are watched events
(Deployments and pods) and a 100 ms poll of the queue. Prints figures; asserts
nothing. Results also go to ``.bench/scale-results.json``.

    make bench-scale                      # all four runs, scaleDownDelay 120s (the default)
    .venv/bin/python bench/bench_scale.py --scale-down-delay 30s --scenarios burst
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
# Appended, not prepended: the repository's operator/ folder must not shadow the stdlib.
sys.path.append(str(REPO))

import asyncpg  # noqa: E402
import keda_model  # noqa: E402
from kubernetes import client as kube_client  # noqa: E402
from kubernetes import config as kube_config  # noqa: E402
from kubernetes import watch as kube_watch  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from localcluster.control_plane import REPO_ROOT, LocalCluster  # noqa: E402
from localcluster.fixtures import run_ledger  # noqa: E402
from localcluster.operator_process import OperatorProcess  # noqa: E402
from workerfleet.durations import parse_duration  # noqa: E402
from workerfleet.worker.connector import Connector  # noqa: E402
from workerfleet.worker.migrations import migrate  # noqa: E402
from workerfleet.worker.models import EnqueueRequest  # noqa: E402
from workerfleet.worker.repository import Repository  # noqa: E402

RESULTS_FILE = REPO / ".bench" / "scale-results.json"
POOL = "bench"
QUEUE = "bench"
MAX_REPLICAS = 20
JOBS_PER_WORKER = 10
CONCURRENCY = 10
JOB_SECONDS = 1.0
BURST_JOBS = 1_000
RAMP_RATE_PER_SECOND = 100
RAMP_SECONDS = 30.0
RAMP_TICK_SECONDS = 0.1
DEFAULT_STEP = 10
QUEUE_POLL_SECONDS = 0.1
WATCH_WINDOW_SECONDS = 5
SETTLE_TIMEOUT_SECONDS = 120.0
REACTION_QUANTILES = (0.5, 0.99)


# -- what the cluster did, watched ----------------------------------------------------------------


@dataclass
class PodSeen:
    created: float
    ready: float | None = None
    gone: float | None = None


@dataclass
class Watched:
    """Deployment replicas and pod readiness over time (monotonic seconds)."""

    replicas: list[tuple[float, int]] = field(default_factory=list)
    pods: dict[str, PodSeen] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_deployment(self, at: float, body: dict[str, Any]) -> None:
        replicas = int((body.get("spec") or {}).get("replicas") or 0)
        with self.lock:
            if not self.replicas or self.replicas[-1][1] != replicas:
                self.replicas.append((at, replicas))

    def on_pod(self, at: float, kind: str, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        name = str(meta.get("name"))
        conditions = (body.get("status") or {}).get("conditions") or []
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        with self.lock:
            seen = self.pods.setdefault(name, PodSeen(created=at))
            if ready and seen.ready is None:
                seen.ready = at
            if (kind == "DELETED" or meta.get("deletionTimestamp")) and seen.gone is None:
                seen.gone = at

    def ready_at(self, at: float) -> int:
        with self.lock:
            return sum(
                1
                for p in self.pods.values()
                if p.ready is not None and p.ready <= at and (p.gone is None or p.gone > at)
            )


class Watcher:
    """Watches the pool's Deployment and pods from threads until stopped."""

    def __init__(self, api: Any, namespace: str, watched: Watched) -> None:
        self.apps = kube_client.AppsV1Api(api)
        self.core = kube_client.CoreV1Api(api)
        self.namespace = namespace
        self.watched = watched
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._deployments, daemon=True),
            threading.Thread(target=self._pods, daemon=True),
        ]

    def __enter__(self) -> Watcher:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=WATCH_WINDOW_SECONDS * 2)

    def _loop(
        self, list_call: Callable[..., Any], on_event: Callable[[str, Any], None], **kw: Any
    ) -> None:
        version = None
        while not self.stop.is_set():
            stream = kube_watch.Watch().stream(  # type: ignore[no-untyped-call]
                list_call,
                self.namespace,
                resource_version=version,
                timeout_seconds=WATCH_WINDOW_SECONDS,
                _preload_content=True,
                **kw,
            )
            for event in stream:
                on_event(event["type"], event["raw_object"])
                version = event["raw_object"]["metadata"]["resourceVersion"]
                if self.stop.is_set():
                    break

    def _deployments(self) -> None:
        self._loop(
            self.apps.list_namespaced_deployment,
            lambda _kind, body: self.watched.on_deployment(time.monotonic(), body),
            field_selector=f"metadata.name={POOL}",
        )

    def _pods(self) -> None:
        self._loop(
            self.core.list_namespaced_pod,
            lambda kind, body: self.watched.on_pod(time.monotonic(), kind, body),
            label_selector=f"workerfleet.dev/pool={POOL}",
        )


# -- one run ------------------------------------------------------------------------------------


@dataclass
class Run:
    """One measured run: a column of the table (a real KEDA run can be one too)."""

    scenario: str
    step: int
    system: str = "workerfleet"
    peak: int = 0
    to_first_change: float | None = None
    to_peak: float | None = None
    to_peak_ready: float | None = None
    to_empty: float | None = None
    to_min: float | None = None
    pod_start_median: float | None = None
    reruns: int = 0
    unfinished: int = 0
    drains_timed_out: float = 0.0
    interrupted: float = 0.0
    reaction: dict[str, float | None] = field(default_factory=dict)
    reaction_count: float = 0.0


def arrivals(scenario: str) -> list[tuple[float, int]]:
    if scenario == "burst":
        return [(0.0, BURST_JOBS)]
    per_tick = round(RAMP_RATE_PER_SECOND * RAMP_TICK_SECONDS)
    return [
        (i * RAMP_TICK_SECONDS, per_tick) for i in range(round(RAMP_SECONDS / RAMP_TICK_SECONDS))
    ]


def pool_manifest(namespace: str, step: int, delay: str, handlers_dir: Path) -> dict[str, Any]:
    return {
        "apiVersion": "workerfleet.dev/v1alpha1",
        "kind": "WorkerPool",
        "metadata": {"name": POOL, "namespace": namespace},
        "spec": {
            "image": "workerfleet-worker:bench",
            "queue": QUEUE,
            "database": {"secretRef": {"name": "queue-db"}},
            "replicas": {"min": 0, "max": MAX_REPLICAS},
            "scaling": {
                "jobsPerWorker": JOBS_PER_WORKER,
                "maxScaleUpStep": step,
                "scaleDownDelay": delay,
            },
            "worker": {
                "handlers": run_ledger.MODULE,
                "concurrency": CONCURRENCY,
                "shutdownGracePeriod": "10s",
            },
            "env": [
                {"name": "PYTHONPATH", "value": str(handlers_dir)},
                {
                    "name": run_ledger.DSN_VARIABLE,
                    "valueFrom": {"secretKeyRef": {"name": "queue-db", "key": "dsn"}},
                },
            ],
        },
    }


async def enqueue(dsn: str, plan: list[tuple[float, int]]) -> float:
    """Enqueue as planned; returns the monotonic time the first enqueue committed."""
    async with await Connector.open(dsn, min_size=1, max_size=1) as connector:
        repository = Repository(connector)
        started = time.monotonic()
        first: float | None = None
        for offset, count in plan:
            delay = started + offset - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await repository.enqueue_many(
                [EnqueueRequest(QUEUE, "sleep", {"seconds": JOB_SECONDS})] * count
            )
            first = first if first is not None else time.monotonic()
        assert first is not None
        return first


async def wait_empty(dsn: str, within: float) -> float:
    async with await Connector.open(dsn, min_size=1, max_size=1) as connector:
        repository = Repository(connector)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            stats = {row.queue: row for row in await repository.queue_stats()}
            row = stats.get(QUEUE)
            if row is not None and row.pending + row.scheduled + row.running == 0:
                return time.monotonic()
            await asyncio.sleep(QUEUE_POLL_SECONDS)
    raise TimeoutError("the queue did not empty")


async def sql_value(dsn: str, sql: str) -> Any:
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetchval(sql)
    finally:
        await connection.close()


def wait_until(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


def metrics_of(operator: OperatorProcess) -> dict[str, list[tuple[dict[str, str], float]]]:
    _, body = operator.get("/metrics")
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def metric(
    samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str
) -> float:
    return sum(
        value
        for sample_labels, value in samples.get(name, [])
        if all(sample_labels.get(k) == v for k, v in labels.items())
    )


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus's histogram_quantile over (upper bound, cumulative count) pairs."""
    buckets = sorted(buckets)
    total = buckets[-1][1] if buckets else 0.0
    if total == 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = bound, count
    return lower


def reaction(
    samples: dict[str, list[tuple[dict[str, str], float]]],
) -> tuple[dict[str, float | None], float]:
    name = "workerfleet_operator_scale_reaction_seconds"
    buckets = [(float(labels["le"]), value) for labels, value in samples.get(f"{name}_bucket", [])]
    quantiles = {f"p{round(q * 100)}": histogram_quantile(q, buckets) for q in REACTION_QUANTILES}
    return quantiles, metric(samples, f"{name}_count")


def one_run(
    cluster: LocalCluster,
    api: Any,
    scenario: str,
    step: int,
    delay: str,
    handlers_dir: Path,
    logs: Path,
) -> Run:
    run = Run(scenario, step)
    namespace = f"bench-scale-{uuid.uuid4().hex[:6]}"
    dsn = cluster.postgres.create_database("bench")
    asyncio.run(migrate(dsn))
    asyncio.run(_ddl(dsn))
    cluster.kubectl("create", "namespace", namespace)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "queue-db", "namespace": namespace},
        "stringData": {"dsn": dsn},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(secret))
    operator = OperatorProcess(cluster.kubeconfig, namespace, logs / f"operator-{namespace}.log")
    watched = Watched()
    try:
        operator.wait_ready()
        cluster.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps(pool_manifest(namespace, step, delay, handlers_dir)),
        )
        wait_until(
            "the operator to LISTEN on the queue database",
            lambda: metric(metrics_of(operator), "workerfleet_operator_listen_connections") >= 1,
            60,
        )
        with Watcher(api, namespace, watched):
            wait_until(
                "the Deployment at 0",
                lambda: bool(watched.replicas) and watched.replicas[-1][1] == 0,
                60,
            )
            t0 = asyncio.run(enqueue(dsn, arrivals(scenario)))
            empty_at = asyncio.run(wait_empty(dsn, 600))
            run.to_empty = empty_at - t0
            wait_until(
                "back to min",
                lambda: (
                    bool(watched.replicas)
                    and watched.replicas[-1][1] == 0
                    and watched.replicas[-1][0] > empty_at
                ),
                parse_duration(delay) + SETTLE_TIMEOUT_SECONDS,
            )
        measure(run, watched, t0, empty_at)
        run.reruns = int(asyncio.run(sql_value(dsn, run_ledger.RERUNS_SQL)))
        run.unfinished = int(asyncio.run(sql_value(dsn, run_ledger.UNFINISHED_SQL)))
        samples = metrics_of(operator)
        run.drains_timed_out = metric(
            samples, "workerfleet_operator_drains_total", outcome="timed_out"
        )
        run.interrupted = metric(samples, "workerfleet_operator_scale_in_interrupted_jobs_total")
        run.reaction, run.reaction_count = reaction(samples)
    finally:
        operator.stop()
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    return run


async def _ddl(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(run_ledger.LEDGER_DDL)
    finally:
        await connection.close()


def measure(run: Run, watched: Watched, t0: float, empty_at: float) -> None:
    after = [(at, n) for at, n in watched.replicas if at >= t0]
    if not after:
        return
    run.to_first_change = after[0][0] - t0
    run.peak = max(n for _, n in after)
    peak_at = next(at for at, n in after if n == run.peak)
    run.to_peak = peak_at - t0
    moments = sorted(
        {peak_at} | {p.ready for p in watched.pods.values() if p.ready and p.ready >= peak_at}
    )
    ready_at = next((at for at in moments if watched.ready_at(at) >= run.peak), None)
    run.to_peak_ready = None if ready_at is None else ready_at - t0
    back = next((at for at, n in after if n == 0 and at > empty_at), None)
    run.to_min = None if back is None else back - t0
    starts = [p.ready - p.created for p in watched.pods.values() if p.ready is not None]
    run.pod_start_median = statistics.median(starts) if starts else None


# -- the table ----------------------------------------------------------------------------------


def seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


def peaked(value: float | None, peak: int) -> str:
    return seconds(value) if peak == MAX_REPLICAS else f"{seconds(value)} (peak {peak})"


def peaked_text(figure: keda_model.Figure, peak: int) -> str:
    return figure.text() if peak == MAX_REPLICAS else f"{figure.text()} (peak {peak})"


def print_table(runs: list[Run], delay: str) -> None:
    for scenario in dict.fromkeys(r.scenario for r in runs):
        mine = [r for r in runs if r.scenario == scenario]
        starts = [r.pod_start_median for r in mine if r.pod_start_median is not None]
        start = statistics.median(starts) if starts else 10.0
        work = keda_model.Workload(
            arrivals(scenario), JOB_SECONDS, CONCURRENCY, JOBS_PER_WORKER, MAX_REPLICAS, start
        )
        keda = keda_model.computed(work)
        title = (
            "1,000 one-second jobs at once"
            if scenario == "burst"
            else f"{RAMP_RATE_PER_SECOND} jobs/s for {RAMP_SECONDS:g} s"
        )
        print(
            f"\n{scenario}: {title}; min 0, max {MAX_REPLICAS}, jobsPerWorker {JOBS_PER_WORKER}, "
            f"concurrency {CONCURRENCY}; workerfleet scaleDownDelay {delay}"
        )
        headers = [f"{r.system} step {r.step}" for r in mine] + ["KEDA defaults (computed)"]
        rows: list[tuple[str, list[str]]] = [
            ("first replicas change", [seconds(r.to_first_change) for r in mine] + ["-"]),
            (
                f"to spec.replicas = {MAX_REPLICAS} (or peak)",
                [peaked(r.to_peak, r.peak) for r in mine] + [peaked_text(keda.to_peak, keda.peak)],
            ),
            (
                f"to {MAX_REPLICAS} pods Ready (or peak)",
                [peaked(r.to_peak_ready, r.peak) for r in mine]
                + [peaked_text(keda.to_peak_ready, keda.peak)],
            ),
            ("to the queue empty", [seconds(r.to_empty) for r in mine] + [keda.to_empty.text()]),
            ("back to min (0)", [seconds(r.to_min) for r in mine] + [keda.to_min.text()]),
            (
                "jobs run twice (scale-in)",
                [str(r.reruns) for r in mine] + ["0 (no scale-in while jobs run)"],
            ),
            ("drains timed out", [f"{r.drains_timed_out:g}" for r in mine] + ["-"]),
            (
                "reaction p50 / p99 (histogram)",
                [
                    f"{seconds(r.reaction.get('p50'))} / {seconds(r.reaction.get('p99'))}"
                    f" (n={r.reaction_count:g})"
                    for r in mine
                ]
                + ["-"],
            ),
            (
                "pod start on this node (median)",
                [seconds(r.pod_start_median) for r in mine] + [f"{start:.2f} s (same)"],
            ),
        ]
        widths = [max(len(h), *(len(row[1][i]) for row in rows)) for i, h in enumerate(headers)]
        label_width = max(len(label) for label, _ in rows)
        print(
            " " * label_width
            + "  "
            + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
        )
        for label, cells in rows:
            print(
                label.ljust(label_width)
                + "  "
                + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
            )
    print(
        "\nKEDA column: computed from its documented defaults (keda_model.py: pollingInterval "
        "30 s, HPA sync 15 s, scale-up max(4 pods, 100%) per 15 s, scale-down stabilization 300 s, "
        "cooldown 300 s), mean over the poll and sync phases (best-worst); not a KEDA run."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_scale", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scenarios", nargs="+", choices=("burst", "ramp"), default=["burst", "ramp"]
    )
    parser.add_argument("--steps", nargs="+", type=int, default=[DEFAULT_STEP, MAX_REPLICAS])
    parser.add_argument("--scale-down-delay", default="120s")
    args = parser.parse_args(argv)
    cluster = LocalCluster.from_environment(quiet_build=True)
    was_up = cluster.is_up()
    cluster.up()
    logs = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    runs: list[Run] = []
    try:
        cluster.kubectl("apply", "-f", str(REPO_ROOT / "crds"))
        cluster.kubectl(
            "wait",
            "--for=condition=Established",
            "crd/workerpools.workerfleet.dev",
            "--timeout=60s",
        )
        api = kube_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(cluster.kubeconfig)
        )
        handlers_dir = run_ledger.handlers_dir()
        for scenario in args.scenarios:
            for step in args.steps:
                print(f"running {scenario} with maxScaleUpStep {step} ...", flush=True)
                runs.append(
                    one_run(cluster, api, scenario, step, args.scale_down_delay, handlers_dir, logs)
                )
    finally:
        if not was_up:
            cluster.down()
    print_table(runs, args.scale_down_delay)
    print(f"\noperator logs: {logs}")
    RESULTS_FILE.parent.mkdir(exist_ok=True)
    RESULTS_FILE.write_text(json.dumps([asdict(r) for r in runs], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``make bench-operator``: one operator for 10, 100 and 1,000 WorkerPools, at rest and fresh.

On the local cluster (real kube-apiserver, etcd, controller-manager), per size: that
many WorkerPools (replicas min 0, no worker ever starts: activationJobs is out of
reach) spread over two queue databases, each with its metrics Service, plus 50
Monitors (interval 30s) selecting them. For each status cadence:

- old: ``WORKERFLEET_OPERATOR_STATUS_REFRESH=interval`` with a 5 s resync, the status
  cadence the operator had before (a status write every 5 s at most);
- new: the default, a status refreshed by events (NOTIFY, the databases' stats rounds,
  pod and Deployment watches) with a 60 s backstop,

a fresh operator process serves the namespace and the bench prints:

- the seconds until it synced every pool (kopf's resume handler, one sync each);
- at rest (nothing changes for REST_SECONDS): the operator's RSS and CPU (/proc), the
  API requests per second it makes, counted in the kube-apiserver's audit log (the
  operator runs as its own user, every request of which is audited; watches count when
  they are opened), its status writes per second, and the stats queries per database
  per second and per round (the operator's /metrics: one query per round whatever the
  number of pools);
- status freshness: seconds from a queue change to the pool's status showing it, as a
  watch on the WorkerPools sees it, p50 and p99 over SAMPLES changes of two kinds:
  ``enqueue`` (5 jobs in one statement: the NOTIFY path) and ``drain`` (those jobs
  cancelled: no NOTIFY, the stats round finds it), on BATCH pools at a time;
- API writes per second while those changes happen (status patches and all writes
  of the operator's user in the audit log).

Prints figures; asserts nothing. Results also go to ``.bench/operator-results.json``.

    make bench-operator
    .venv/bin/python bench/bench_operator.py --sizes 10,100 --cadences new
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
# Appended, not prepended: the repository's operator/ folder must not shadow the stdlib.
sys.path.append(str(REPO))

import asyncpg  # noqa: E402
from kubernetes import client as kube_client  # noqa: E402
from kubernetes import config as kube_config  # noqa: E402
from kubernetes import watch as kube_watch  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from localcluster import pki  # noqa: E402
from localcluster.control_plane import LocalCluster  # noqa: E402
from localcluster.operator_process import OperatorProcess  # noqa: E402
from localcluster.waiting import wait_for  # noqa: E402
from workerfleet.worker.connector import Connector  # noqa: E402
from workerfleet.worker.migrations import migrate  # noqa: E402
from workerfleet.worker.models import EnqueueRequest  # noqa: E402
from workerfleet.worker.repository import Repository  # noqa: E402

RESULTS_FILE = REPO / ".bench" / "operator-results.json"
SIZES = (10, 100, 1000)
DATABASES = ("bench_op_a", "bench_op_b")
MONITORS = 50
APPLY_CHUNK = 200
SETTLE_SECONDS = 15.0
# After the first syncs, the new Deployments' status settles (the controller-manager) and
# each change brings pool status writes: "at rest" starts once a window of SETTLE_WINDOW
# seconds holds at most SETTLE_WRITES_PER_SECOND pool status writes a second, or after
# SETTLE_TIMEOUT_SECONDS whatever they are.
SETTLE_WINDOW_SECONDS = 5.0
SETTLE_WRITES_PER_SECOND = 1.0
SETTLE_TIMEOUT_SECONDS = 300.0
REST_SECONDS = 30.0
SAMPLES = 30
BATCH = 5
JOBS_PER_CHANGE = 5
FRESH_TIMEOUT_SECONDS = 30.0
SYNC_TIMEOUT_SECONDS = 600.0
WATCH_WINDOW_SECONDS = 60
CADENCES: dict[str, dict[str, str]] = {
    "old": {
        "WORKERFLEET_OPERATOR_STATUS_REFRESH": "interval",
        "WORKERFLEET_OPERATOR_STATUS_RESYNC_INTERVAL": "5s",
    },
    "new": {},
}
QUANTILES = (0.5, 0.99)


# -- pure helpers ---------------------------------------------------------------------------------


def quantile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank quantile (p99 of 30 samples is their maximum)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q * len(ordered) + 0.5)))
    return ordered[rank - 1]


def audit_requests(lines: Iterator[str], user: str, start: float, end: float) -> dict[str, int]:
    """Requests of ``user`` received in [start, end) (unix seconds), by verb, from audit events
    (one per stage: counted once per audit ID)."""
    seen: set[str] = set()
    verbs: dict[str, int] = {}
    for line in lines:
        if user not in line:
            continue
        event = json.loads(line)
        if event.get("user", {}).get("username") != user or event["auditID"] in seen:
            continue
        received = datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00"))
        if start <= received.timestamp() < end:
            seen.add(event["auditID"])
            verbs[event["verb"]] = verbs.get(event["verb"], 0) + 1
    return verbs


def metric_sums(text: str) -> dict[str, float]:
    """Each sample of the operator's /metrics summed over its labels, plus name{label=value}."""
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
            for label, value in sample.labels.items():
                key = f"{sample.name}{{{label}={value}}}"
                sums[key] = sums.get(key, 0.0) + sample.value
    return sums


# -- the cluster side -----------------------------------------------------------------------------


def secret_name(database: str) -> str:
    """The Secret holding a database's DSN (Kubernetes names take no underscore)."""
    return database.replace("_", "-")


def pool_manifest(namespace: str, index: int) -> dict[str, Any]:
    return {
        "apiVersion": "workerfleet.dev/v1alpha1",
        "kind": "WorkerPool",
        "metadata": {
            "name": f"p{index:04d}",
            "namespace": namespace,
            "labels": {"group": f"g{index % MONITORS:02d}"},
        },
        "spec": {
            "image": "workerfleet-worker:bench",
            "queue": f"q{index:04d}",
            "database": {"secretRef": {"name": secret_name(DATABASES[index % len(DATABASES)])}},
            "replicas": {"min": 0, "max": 2},
            # Never reached: the queue changes of the bench start no worker.
            "scaling": {"activationJobs": 1_000_000},
            "worker": {"handlers": "workerfleet.worker.demo_handlers"},
        },
    }


def monitor_manifest(namespace: str, index: int) -> dict[str, Any]:
    return {
        "apiVersion": "workerfleet.dev/v1alpha1",
        "kind": "Monitor",
        "metadata": {"name": f"m{index:02d}", "namespace": namespace},
        "spec": {"selector": {"matchLabels": {"group": f"g{index:02d}"}}, "interval": "30s"},
    }


def apply_all(cluster: LocalCluster, items: list[dict[str, Any]]) -> None:
    for start in range(0, len(items), APPLY_CHUNK):
        listed = {"apiVersion": "v1", "kind": "List", "items": items[start : start + APPLY_CHUNK]}
        done = cluster.kubectl(
            "apply", "-f", "-", input=json.dumps(listed), timeout=600, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"kubectl apply failed: {done.stderr.strip()}")


def database_dsn(cluster: LocalCluster, name: str) -> str:
    return cluster.postgres_dsn(name)


async def create_databases(cluster: LocalCluster) -> None:
    admin = await asyncpg.connect(cluster.postgres_dsn())
    try:
        for name in DATABASES:
            exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
            if not exists:
                await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    for name in DATABASES:
        await migrate(database_dsn(cluster, name))


def set_up(cluster: LocalCluster, namespace: str, size: int) -> None:
    cluster.kubectl("delete", "namespace", namespace, "--ignore-not-found", timeout=600)
    cluster.kubectl("create", "namespace", namespace)
    secrets = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": secret_name(name), "namespace": namespace},
            "stringData": {"dsn": database_dsn(cluster, name)},
        }
        for name in DATABASES
    ]
    monitors = [monitor_manifest(namespace, i) for i in range(MONITORS)]
    apply_all(cluster, [*secrets, *monitors, *(pool_manifest(namespace, i) for i in range(size))])


# -- status as a watch sees it --------------------------------------------------------------------


@dataclass
class PendingSeen:
    """Each pool's status.queue.pending over time (monotonic seconds), from a watch."""

    history: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_pool(self, at: float, body: dict[str, Any]) -> None:
        queue = (body.get("status") or {}).get("queue") or {}
        if "pending" not in queue:
            return
        name = str(body["metadata"]["name"])
        with self.lock:
            history = self.history.setdefault(name, [])
            if not history or history[-1][1] != queue["pending"]:
                history.append((at, int(queue["pending"])))

    def shown_at(self, pool: str, pending: int, after: float) -> float | None:
        with self.lock:
            for at, value in self.history.get(pool, []):
                if at >= after and value == pending:
                    return at
        return None

    def current(self, pool: str) -> int | None:
        with self.lock:
            history = self.history.get(pool)
            return history[-1][1] if history else None


class PoolWatcher:
    def __init__(self, api: Any, namespace: str, seen: PendingSeen) -> None:
        self.custom = kube_client.CustomObjectsApi(api)
        self.namespace = namespace
        self.seen = seen
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PoolWatcher:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.thread.join(timeout=WATCH_WINDOW_SECONDS + 10)

    def _run(self) -> None:
        version = None
        while not self.stop.is_set():
            stream = kube_watch.Watch().stream(  # type: ignore[no-untyped-call]
                self.custom.list_namespaced_custom_object,
                "workerfleet.dev",
                "v1alpha1",
                self.namespace,
                "workerpools",
                resource_version=version,
                timeout_seconds=5,
            )
            for event in stream:
                self.seen.on_pool(time.monotonic(), event["raw_object"])
                version = event["raw_object"]["metadata"]["resourceVersion"]
                if self.stop.is_set():
                    break


# -- the operator ---------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_megabytes(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def scrape(operator: OperatorProcess) -> dict[str, float]:
    status, text = operator.get("/metrics")
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    return metric_sums(text)


def audit_count(cluster: LocalCluster, start: float, end: float) -> dict[str, int]:
    with cluster.audit_log.open() as lines:
        return audit_requests(lines, pki.OPERATOR.user, start, end)


# -- one run --------------------------------------------------------------------------------------


@dataclass
class Result:
    size: int
    cadence: str
    synced_seconds: float | None = None
    settled_seconds: float | None = None
    """How long after SETTLE_SECONDS the pools' status writes took to stop (see settle)."""
    rss_mb: float = 0.0
    cpu_percent: float = 0.0
    api_per_second: float = 0.0
    api_by_verb: dict[str, int] = field(default_factory=dict)
    status_writes_per_second: float = 0.0
    queries_per_database_second: float = 0.0
    queries_per_round: float | None = None
    databases: float = 0.0
    fresh: dict[str, list[float]] = field(default_factory=dict)
    missed: dict[str, int] = field(default_factory=dict)
    busy_status_writes_per_second: float = 0.0
    busy_api_writes_per_second: float = 0.0

    def fresh_quantile(self, kind: str, q: float) -> float | None:
        return quantile(self.fresh.get(kind, []), q)


async def change_queues(
    cluster: LocalCluster, pools: list[int], kind: str, ids: dict[int, list[int]]
) -> None:
    """Enqueue JOBS_PER_CHANGE jobs on each pool's queue, or cancel the ones enqueued."""
    by_database: dict[str, list[int]] = {}
    for index in pools:
        by_database.setdefault(DATABASES[index % len(DATABASES)], []).append(index)
    for name, indexes in by_database.items():
        async with await Connector.open(
            database_dsn(cluster, name), min_size=1, max_size=1
        ) as connector:
            repository = Repository(connector)
            for index in indexes:
                if kind == "enqueue":
                    requests = [
                        EnqueueRequest(queue=f"q{index:04d}", task="sleep", payload={})
                        for _ in range(JOBS_PER_CHANGE)
                    ]
                    ids[index] = await repository.enqueue_many(requests)
                else:
                    for job_id in ids.pop(index, []):
                        await repository.cancel(job_id)


def measure_freshness(
    cluster: LocalCluster, seen: PendingSeen, size: int, result: Result, samples: int
) -> None:
    """Enqueue on BATCH pools, wait until their status shows it; cancel those jobs, wait
    again; repeat until SAMPLES changes of each kind were timed."""
    rng = random.Random(size)
    for kind in ("enqueue", "drain"):
        result.fresh[kind], result.missed[kind] = [], 0
    for _ in range(max(1, samples // BATCH)):
        pools = rng.sample(range(size), min(BATCH, size))
        before = {i: seen.current(f"p{i:04d}") or 0 for i in pools}
        ids: dict[int, list[int]] = {}
        for kind, targets in (
            ("enqueue", {i: before[i] + JOBS_PER_CHANGE for i in pools}),
            ("drain", before),
        ):
            changed_at = time.monotonic()
            asyncio.run(change_queues(cluster, pools, kind, ids))
            waiting = dict(targets)
            while waiting and time.monotonic() < changed_at + FRESH_TIMEOUT_SECONDS:
                for index, pending in list(waiting.items()):
                    at = seen.shown_at(f"p{index:04d}", pending, changed_at)
                    if at is not None:
                        result.fresh[kind].append(at - changed_at)
                        del waiting[index]
                time.sleep(0.02)
            result.missed[kind] += len(waiting)


def run_cadence(
    cluster: LocalCluster, api: Any, namespace: str, size: int, cadence: str, samples: int
) -> Result:
    result = Result(size, cadence)
    log = REPO / ".bench" / f"operator-{size}-{cadence}.log"
    log.unlink(missing_ok=True)
    settings = {**CADENCES[cadence], "WORKERFLEET_OPERATOR_LOG_LEVEL": "WARNING"}
    operator = OperatorProcess(cluster.operator_kubeconfig, namespace, log, settings)
    try:
        started = time.monotonic()
        operator.wait_ready(120)
        # Finished first syncs (a sync is counted in pool_syncs_total when it starts; on a
        # loaded machine the applies of 1,000 pools' children run on for tens of seconds).
        wait_for(
            f"the operator to sync all {size} pools",
            lambda: (
                scrape(operator).get("workerfleet_operator_reconciles_total{kind=WorkerPool}", 0)
                >= size
            ),
            timeout=SYNC_TIMEOUT_SECONDS,
            interval=1.0,
        )
        result.synced_seconds = time.monotonic() - started
        time.sleep(SETTLE_SECONDS)
        settle(operator, result)
        rest(cluster, operator, result)
        seen = PendingSeen()
        with PoolWatcher(api, namespace, seen):
            wait_for(
                "the watch to list every pool",
                lambda: len(seen.history) >= size,
                timeout=120,
                interval=0.5,
            )
            before, wall = scrape(operator), time.time()
            busy_started = time.monotonic()
            measure_freshness(cluster, seen, size, result, samples)
            seconds = time.monotonic() - busy_started
            after, wall_end = scrape(operator), time.time()
        writes = "workerfleet_operator_status_writes_total"
        result.busy_status_writes_per_second = (after[writes] - before[writes]) / seconds
        verbs = audit_count(cluster, wall, wall_end)
        written = sum(n for verb, n in verbs.items() if verb in ("create", "update", "patch"))
        result.busy_api_writes_per_second = written / seconds
    finally:
        operator.stop()
    return result


def settle(operator: OperatorProcess, result: Result) -> None:
    """Wait until the pools' status writes have (nearly) stopped; see SETTLE_WINDOW_SECONDS."""
    writes = "workerfleet_operator_status_writes_total{kind=WorkerPool}"
    started = time.monotonic()
    while time.monotonic() - started < SETTLE_TIMEOUT_SECONDS:
        before = scrape(operator).get(writes, 0.0)
        time.sleep(SETTLE_WINDOW_SECONDS)
        rate = (scrape(operator).get(writes, 0.0) - before) / SETTLE_WINDOW_SECONDS
        if rate <= SETTLE_WRITES_PER_SECOND:
            break
    result.settled_seconds = time.monotonic() - started


def rest(cluster: LocalCluster, operator: OperatorProcess, result: Result) -> None:
    before, cpu_before, wall = scrape(operator), cpu_seconds(operator.pid), time.time()
    started = time.monotonic()
    rss = 0.0
    while time.monotonic() - started < REST_SECONDS:
        rss = max(rss, rss_megabytes(operator.pid))
        time.sleep(1.0)
    seconds = time.monotonic() - started
    after, cpu_after, wall_end = scrape(operator), cpu_seconds(operator.pid), time.time()
    result.rss_mb = rss
    result.cpu_percent = 100 * (cpu_after - cpu_before) / seconds
    verbs = audit_count(cluster, wall, wall_end)
    result.api_by_verb = verbs
    result.api_per_second = sum(verbs.values()) / seconds

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    result.status_writes_per_second = (
        delta("workerfleet_operator_status_writes_total{kind=WorkerPool}") / seconds
    )
    result.databases = after.get("workerfleet_operator_stats_databases", 0.0)
    queries = delta("workerfleet_operator_stats_queries_total")
    rounds = delta("workerfleet_operator_stats_rounds_total")
    result.queries_per_database_second = queries / seconds / max(result.databases, 1.0)
    result.queries_per_round = queries / rounds if rounds else None


# -- the table ------------------------------------------------------------------------------------


def seconds_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def print_table(results: list[Result]) -> None:
    print()
    header = (
        f"{'pools':>6} {'cadence':<8} {'synced s':>9} {'settle s':>8} {'RSS MB':>7} {'CPU %':>6} "
        f"{'API req/s':>9} {'status w/s':>10} {'q/db/s':>7} {'q/round':>7} "
        f"{'enqueue p50/p99 s':>18} {'drain p50/p99 s':>16} {'busy API w/s':>12}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        fresh = {
            kind: "/".join(seconds_text(r.fresh_quantile(kind, q)) for q in QUANTILES)
            + (f" ({r.missed[kind]} missed)" if r.missed.get(kind) else "")
            for kind in ("enqueue", "drain")
        }
        print(
            f"{r.size:>6} {r.cadence:<8} {seconds_text(r.synced_seconds):>9} "
            f"{seconds_text(r.settled_seconds):>8} {r.rss_mb:>7.0f} "
            f"{r.cpu_percent:>6.1f} {r.api_per_second:>9.2f} {r.status_writes_per_second:>10.2f} "
            f"{r.queries_per_database_second:>7.2f} {seconds_text(r.queries_per_round):>7} "
            f"{fresh['enqueue']:>18} {fresh['drain']:>16} {r.busy_api_writes_per_second:>12.2f}"
        )
    print()
    print(
        "synced s: until every pool had its first sync; settle s: then until the pools' "
        "status writes stopped (after the new Deployments' status settled); "
        "API req/s: every request of the operator's user in the kube-apiserver's audit log "
        f"during {REST_SECONDS:.0f}s at rest (the {MONITORS} Monitors' status writes, one per "
        "run, included); status w/s: its WorkerPool status patches (/metrics); "
        "q/db/s and q/round: stats queries per database per second and per stats round; "
        f"freshness: {JOBS_PER_CHANGE} jobs enqueued (NOTIFY) or cancelled (no NOTIFY) on "
        f"{BATCH} pools at a time, to the pool's status.queue.pending showing it in a watch; "
        "busy API w/s: the operator's writes (audit log) while those changes happen."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--cadences", default="old,new")
    parser.add_argument("--samples", type=int, default=SAMPLES)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    cadences = [c for c in args.cadences.split(",") if c]
    unknown = set(cadences) - set(CADENCES)
    if unknown:
        parser.error(f"unknown cadences {sorted(unknown)}: use {', '.join(CADENCES)}")
    cluster = LocalCluster.from_environment()
    cluster.up()
    cluster.ensure_audit_policy()
    cluster.kubectl("apply", "-f", str(REPO / "crds"))
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "crd/workerpools.workerfleet.dev",
        "crd/monitors.workerfleet.dev",
        "--timeout=60s",
    )
    # Established comes before discovery serves the new kinds on a fresh cluster.
    wait_for(
        "discovery to serve the workerfleet kinds",
        lambda: cluster.kubectl("get", "workerfleet", "-A", check=False).returncode == 0,
        timeout=60,
    )
    asyncio.run(create_databases(cluster))
    api = kube_config.new_client_from_config(str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
    RESULTS_FILE.parent.mkdir(exist_ok=True)
    results: list[Result] = []
    for size in sizes:
        namespace = f"bench-operator-{size}"
        print(f"== {size} pools on {len(DATABASES)} databases, {MONITORS} Monitors", flush=True)
        set_up(cluster, namespace, size)
        for cadence in cadences:
            result = run_cadence(cluster, api, namespace, size, cadence, args.samples)
            results.append(result)
            print_table([result])
        cluster.kubectl("delete", "namespace", namespace, "--wait=false")
    print_table(results)
    RESULTS_FILE.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    print(f"results: {RESULTS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The soak on the local cluster: set up, stream jobs in, strike, drain, account, tear down."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from localcluster.control_plane import REPO_ROOT, LocalCluster
from localcluster.operator_process import OperatorProcess
from localcluster.postgres import PostgresServer
from localcluster.soak import plan as plans
from localcluster.soak.queries import QUERIES
from localcluster.soak.report import (
    Findings,
    Kill,
    Outage,
    StatusChange,
    TakenBack,
    WorkerRow,
    incarnation_at,
    recoveries,
)
from workerfleet.worker.connector import Connector
from workerfleet.worker.migrations import migrate
from workerfleet.worker.models import EnqueueRequest
from workerfleet.worker.repository import Repository

NAMESPACE = "workerfleet-soak"
POOL = "soak"
QUEUE = "soak"
TASK = "record"
HANDLERS = "soak_tasks"
TASKS_DIR = Path(__file__).resolve().parent / "tasks"
CRDS = REPO_ROOT / "crds"
ENQUEUE_EVERY_SECONDS = 0.5
STATUS_EVERY_SECONDS = 2.0
DRAIN_POLL_SECONDS = 2.0
READY_TIMEOUT_SECONDS = 240.0
NAMESPACE_GONE_TIMEOUT_SECONDS = 120.0
POOL_VARIABLE = "WORKERFLEET_POOL"
POD_VARIABLE = "POD_NAME"
KUBECTL_TIMEOUT_SECONDS = 15.0
SETUP_TIMEOUT_SECONDS = 180.0
# Crash-looping pods wait out their back-off (up to 30 s each on the local node).
SETTLE_TIMEOUT_SECONDS = 180.0
HEALTHY = "Healthy"

Say = Callable[[str], None]


def worker_processes(pool_key: str) -> dict[str, int]:
    """Pod name -> pid of every live, unstopped worker process of the pool on this node.

    Read from /proc (the pods are local processes), so faults strike on their beat even
    while the API server is down.
    """
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = dict(
                item.split("=", 1)
                for item in (entry / "environ").read_bytes().decode(errors="replace").split("\0")
                if "=" in item
            )
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if environ.get(POOL_VARIABLE) == pool_key and state not in ("T", "t", "Z"):
            found[environ.get(POD_VARIABLE, "")] = int(entry.name)
    return found


class Soak:
    def __init__(self, plan: plans.Plan, workdir: Path, cluster: LocalCluster, say: Say) -> None:
        self.plan = plan
        self.workdir = workdir
        self.cluster = cluster
        self.say = say
        self.rng = random.Random(8)
        self.postgres = PostgresServer(workdir / "postgres")
        self.operator: OperatorProcess | None = None
        self.cluster_started = False
        self.dsn = ""
        self.started = 0.0
        self.enqueued = 0
        self.kills: list[Kill] = []
        self.events: list[tuple[float, str]] = []
        self.history: list[StatusChange] = []
        self.outages: list[Outage] = []
        self.hung_pid: int | None = None
        self.hung_pod: str | None = None

    # -- plumbing -------------------------------------------------------------------------------

    def kubectl(
        self,
        *args: str,
        stdin: str | None = None,
        check: bool = True,
        timeout: float = SETUP_TIMEOUT_SECONDS,
    ) -> str:
        result = self.cluster.kubectl(*args, input=stdin, check=False, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def apply(self, manifest: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))

    def event(self, what: str) -> None:
        now = time.time()
        self.events.append((now, what))
        self.say(f"{now - self.started:7.1f} s  {what}")

    # -- set up ---------------------------------------------------------------------------------

    def set_up(self) -> None:
        running = all(pid is not None for pid in self.cluster.status().values())
        self.cluster.up()
        self.cluster_started = not running
        self.postgres.start()
        self.dsn = self.postgres.create_database("soak")
        asyncio.run(self._prepare_database())
        self.kubectl("apply", "-f", str(CRDS))
        self.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/workerpools.workerfleet.dev",
            "crd/monitors.workerfleet.dev",
        )
        if self.kubectl("get", "namespace", NAMESPACE, "--ignore-not-found", "-o", "name"):
            self.kubectl("delete", "namespace", NAMESPACE, "--timeout=120s")
        self.kubectl("create", "namespace", NAMESPACE)
        self.operator = OperatorProcess(
            self.cluster.kubeconfig, NAMESPACE, self.workdir / "operator.log"
        )
        self.operator.wait_ready()
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "queue-db", "namespace": NAMESPACE},
                "stringData": {"dsn": self.dsn},
            }
        )
        self.apply(self.workerpool())
        self.apply(self.monitor())
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while len(self.ready_pods()) < self.plan.workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.plan.workers} workers not ready in time")
            time.sleep(1.0)

    async def _prepare_database(self) -> None:
        await migrate(self.dsn)
        async with await Connector.open(self.dsn, min_size=1, max_size=1) as connector:
            await connector.execute(QUERIES["install"])

    def workerpool(self) -> dict[str, Any]:
        return {
            "apiVersion": "workerfleet.dev/v1alpha1",
            "kind": "WorkerPool",
            "metadata": {"name": POOL, "namespace": NAMESPACE, "labels": {"soak": "true"}},
            "spec": {
                "image": "workerfleet-worker:soak",
                "queue": QUEUE,
                "database": {"secretRef": {"name": "queue-db"}},
                "replicas": {"min": self.plan.workers, "max": self.plan.workers},
                "worker": {
                    "handlers": HANDLERS,
                    "concurrency": self.plan.concurrency,
                    "maxAttempts": self.plan.max_attempts,
                },
                # The workers import the soak's task from this checkout.
                "env": [{"name": "PYTHONPATH", "value": str(TASKS_DIR)}],
            },
        }

    def monitor(self) -> dict[str, Any]:
        """A Monitor with default settings, for the soak's pool."""
        return {
            "apiVersion": "workerfleet.dev/v1alpha1",
            "kind": "Monitor",
            "metadata": {"name": POOL, "namespace": NAMESPACE},
            "spec": {"selector": {"matchLabels": {"soak": "true"}}},
        }

    def pods(self) -> list[dict[str, Any]]:
        listed = self.kubectl(
            "get",
            "pods",
            "-n",
            NAMESPACE,
            "-l",
            f"workerfleet.dev/pool={POOL}",
            "-o",
            "json",
            timeout=KUBECTL_TIMEOUT_SECONDS,
        )
        items: list[dict[str, Any]] = json.loads(listed).get("items", [])
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def ready_pods(self) -> list[dict[str, Any]]:
        return [
            p
            for p in self.pods()
            if any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in (p.get("status") or {}).get("conditions") or []
            )
        ]

    # -- the window -----------------------------------------------------------------------------

    async def run(self) -> Findings:
        self.started = time.time()
        self.event(
            f"window of {self.plan.seconds:.0f} s: {self.plan.jobs} jobs at "
            f"{self.plan.jobs_per_second:.0f}/s, {self.plan.workers} workers x "
            f"{self.plan.concurrency}"
        )
        watcher = asyncio.create_task(self.watch_status())
        try:
            await asyncio.gather(self.produce(), self.strike())
            await self.drain()
            await self.settle()
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        return await self.account()

    async def produce(self) -> None:
        async with await Connector.open(self.dsn, min_size=1, max_size=2) as connector:
            repository = Repository(connector)
            while self.enqueued < self.plan.jobs:
                elapsed = time.time() - self.started
                due = min(self.plan.jobs, int(self.plan.jobs_per_second * elapsed) + 1)
                batch = [
                    EnqueueRequest(QUEUE, TASK, {"seconds": self.plan.job_seconds})
                    for _ in range(due - self.enqueued)
                ]
                if batch:
                    try:
                        await repository.enqueue_many(batch)
                        self.enqueued += len(batch)
                    except Exception as error:  # the database restarting: the next tick
                        self.say(f"enqueue failed, retrying: {type(error).__name__}")
                await asyncio.sleep(ENQUEUE_EVERY_SECONDS)
        self.event(f"all {self.enqueued} jobs enqueued")

    async def strike(self) -> None:
        """The kills on their beat and the one-off faults, side by side: a kill is not
        held up by a restart in progress (it is skipped if no worker can be found)."""
        faults = plans.schedule(self.plan)
        await asyncio.gather(
            self.strike_in_turn([f for f in faults if f.kind == plans.KILL]),
            self.strike_in_turn([f for f in faults if f.kind != plans.KILL]),
        )

    async def strike_in_turn(self, faults: list[plans.Fault]) -> None:
        for fault in faults:
            delay = self.started + fault.at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif fault.kind == plans.KILL and -delay > self.plan.kill_every:
                self.event(f"kill due at {fault.at:.0f} s skipped: {-delay:.0f} s late")
                continue
            try:
                await self.fault(fault.kind)
            except Exception as error:
                self.event(f"{fault.kind} failed: {type(error).__name__}: {error}")

    async def fault(self, kind: str) -> None:
        if kind in (plans.KILL, plans.HANG):
            await self.signal_a_worker(signal.SIGKILL if kind == plans.KILL else signal.SIGSTOP)
        elif kind == plans.RESTART_OPERATOR:
            await self.restart("operator", self.restart_operator)
        elif kind == plans.RESTART_POSTGRES:
            await self.restart("PostgreSQL", self.postgres.restart)
        elif kind == plans.RESTART_APISERVER:
            await self.restart("kube-apiserver", self.cluster.restart_apiserver)

    def restart_operator(self) -> None:
        assert self.operator is not None
        self.operator.restart()
        self.operator.wait_ready()

    async def restart(self, what: str, restart: Callable[[], object]) -> None:
        began = time.time()
        await asyncio.to_thread(restart)
        self.outages.append(Outage(began, time.time(), what))
        self.event(f"{what} restarted (serving again after {time.time() - began:.1f} s)")

    async def signal_a_worker(self, sig: signal.Signals) -> None:
        """A worker holding jobs if the database says which do, else any running one; of
        those, the one whose pod was signalled longest ago (never is longest)."""
        processes = worker_processes(f"{NAMESPACE}/{POOL}")
        processes.pop(self.hung_pod or "", None)
        if not processes:
            self.event(f"{sig.name}: no running worker to signal")
            return
        try:
            busy = await self.busy_pods()
        except Exception:  # the database restarting
            busy = set()
        targets = sorted(busy & set(processes)) or sorted(processes)
        last_hit = {k.pod: k.at for k in self.kills}
        self.rng.shuffle(targets)
        name = min(targets, key=lambda pod: last_hit.get(pod, 0.0))
        pid = processes[name]
        os.kill(pid, sig)
        self.kills.append(Kill(at=time.time(), pod=name, signal=sig.name))
        if sig == signal.SIGSTOP:
            self.hung_pid, self.hung_pod = pid, name
        self.event(f"{sig.name} worker in pod {name} (pid {pid})")

    async def watch_status(self) -> None:
        last: tuple[object, ...] | None = None
        while True:
            try:
                raw = await asyncio.to_thread(
                    lambda: self.kubectl(
                        "get",
                        "workerpool",
                        POOL,
                        "-n",
                        NAMESPACE,
                        "-o",
                        "json",
                        timeout=KUBECTL_TIMEOUT_SECONDS,
                    )
                )
                status = json.loads(raw).get("status") or {}
            except Exception:  # the API server restarting
                status = None
            if status is not None:
                degraded: dict[str, Any] = next(
                    (c for c in status.get("conditions") or [] if c.get("type") == "Degraded"),
                    {},
                )
                change = StatusChange(
                    at=time.time(),
                    health=str(status.get("health", "")),
                    ready=status.get("readyReplicas"),
                    desired=status.get("desiredReplicas"),
                    degraded=f"Degraded={degraded.get('status')} {degraded.get('reason', '')}",
                )
                key = (change.health, change.ready, change.desired, change.degraded)
                if key != last:
                    self.history.append(change)
                    last = key
            await asyncio.sleep(STATUS_EVERY_SECONDS)

    async def drain(self) -> None:
        deadline = time.time() + self.plan.drain_timeout
        last_said = 0.0
        while time.time() < deadline:
            with contextlib.suppress(Exception):
                left = await self.unfinished()
                if left == 0:
                    self.event("queue drained")
                    return
                if time.time() - last_said > 10:
                    self.say(f"{time.time() - self.started:7.1f} s  {left} jobs to go")
                    last_said = time.time()
            await asyncio.sleep(DRAIN_POLL_SECONDS)
        self.event(f"not drained within {self.plan.drain_timeout:.0f} s")

    async def settle(self) -> None:
        """Until the pool is Healthy again (the end of its status history), or time is up."""
        deadline = time.time() + SETTLE_TIMEOUT_SECONDS
        while time.time() < deadline:
            if self.history and self.history[-1].health == HEALTHY:
                self.event("pool Healthy again")
                return
            await asyncio.sleep(STATUS_EVERY_SECONDS)
        self.event(f"pool not Healthy within {SETTLE_TIMEOUT_SECONDS:.0f} s of draining")

    async def busy_pods(self) -> set[str]:
        async with await Connector.open(self.dsn, min_size=1, max_size=1) as connector:
            return {r["pod"] for r in await connector.fetch(QUERIES["busy_pods"])}

    async def unfinished(self) -> int:
        async with await Connector.open(self.dsn, min_size=1, max_size=1) as connector:
            return int(await connector.fetchval(QUERIES["unfinished"], QUEUE))

    # -- the account ----------------------------------------------------------------------------

    async def account(self) -> Findings:
        async with await Connector.open(self.dsn, min_size=1, max_size=1) as connector:
            states = {
                r["state"]: r["jobs"] for r in await connector.fetch(QUERIES["job_states"], QUEUE)
            }
            twice = int(await connector.fetchval(QUERIES["completed_twice"]))
            runs = {
                r["runs"]: r["jobs"]
                for r in await connector.fetch(QUERIES["executions_per_job"], QUEUE)
            }
            rows = [
                WorkerRow(r["id"], r["pod"], r["started_at"])
                for r in await connector.fetch(QUERIES["worker_rows"])
            ]
            kills = [
                Kill(k.at, k.pod, k.signal, incarnation_at(k.pod, k.at, rows)) for k in self.kills
            ]
            workers = [k.worker_id for k in kills if k.worker_id is not None]
            taken = [
                TakenBack(r["job_id"], r["worker_id"], r["at"], r["why"], r["ran_again"])
                for r in await connector.fetch(QUERIES["taken_back"], workers)
            ]
        return Findings(
            states=states,
            completed_twice=twice,
            executions=runs,
            recoveries=recoveries(kills, taken),
            kills=kills,
            history=self.history,
            events=self.events,
            outages=self.outages,
        )

    # -- tear down ------------------------------------------------------------------------------

    def tear_down(self) -> None:
        if self.hung_pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.hung_pid, signal.SIGCONT)
        # The operator must still run: pods drain and the namespace goes cleanly.
        self.kubectl(
            "delete",
            "namespace",
            NAMESPACE,
            "--ignore-not-found",
            f"--timeout={NAMESPACE_GONE_TIMEOUT_SECONDS:.0f}s",
            check=False,
        )
        if self.operator is not None:
            self.operator.stop()
        self.postgres.destroy()
        if self.cluster_started:
            self.cluster.down()

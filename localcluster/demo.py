"""``make demo``: the whole product on this machine, then torn down.

Brings the local cluster up in-process (``LocalCluster.from_environment()``, quick when
it already runs) and a throwaway PostgreSQL, installs the CRDs, runs the operator
(``OperatorProcess``), applies ``examples/`` (the Secret gets the throwaway DSN), enqueues
a few hundred demo jobs and shows ``kubectl get workerpools`` while real worker processes
drain them. Ctrl-C tears everything down; a cluster the demo started is stopped again, one
that already ran is left running. With ``DEMO_SECONDS`` set it runs unattended: exit 0 as
soon as the queue is drained, 1 if it is not drained within that many seconds. Runs from
a checkout, where ``localcluster`` is importable.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from localcluster.control_plane import REPO_ROOT, LocalCluster
from localcluster.operator_process import OperatorProcess
from localcluster.postgres import PostgresServer
from workerfleet.worker.connector import Connector
from workerfleet.worker.migrations import migrate
from workerfleet.worker.models import EnqueueRequest
from workerfleet.worker.repository import Repository

EXAMPLES = REPO_ROOT / "examples"
CRDS = REPO_ROOT / "crds"
NAMESPACE = "workerfleet-demo"
QUEUE = "demo"
DSN_PLACEHOLDER = "postgresql://USER:PASSWORD@HOST:5432/DATABASE"
REFRESH_SECONDS = 3.0
NAMESPACE_GONE_TIMEOUT_SECONDS = 90.0
SLEEP_JOBS = 240
ECHO_JOBS = 40
CPU_JOBS = 10
FLAKY_JOBS = 10


def say(message: str) -> None:
    print(f"\n== {message}", flush=True)


class Demo:
    def __init__(self, workdir: Path, cluster: LocalCluster) -> None:
        self.workdir = workdir
        self.cluster = cluster
        self.cluster_up = False
        self.cluster_started = False
        self.operator: OperatorProcess | None = None
        self.postgres: PostgresServer | None = None

    # -- plumbing ---------------------------------------------------------------------------

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        result = self.cluster.kubectl(*args, input=stdin, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    # -- steps ------------------------------------------------------------------------------

    def start_cluster(self) -> None:
        say("local cluster")
        running = all(pid is not None for pid in self.cluster.status().values())
        self.cluster.up()
        self.cluster_up = True
        self.cluster_started = not running
        print(f"KUBECONFIG={self.cluster.kubeconfig}" + (" (already running)" if running else ""))

    def start_postgres(self) -> str:
        say("throwaway PostgreSQL")
        server = PostgresServer(self.workdir / "postgres")
        server.start()
        self.postgres = server
        dsn = server.create_database()
        print(f"listening on {server.host}:{server.port}")
        return dsn

    def install(self, dsn: str) -> None:
        say("CRDs, namespace, operator, examples/")
        self.kubectl("apply", "-f", str(CRDS))
        self.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/workerpools.workerfleet.dev",
            "crd/monitors.workerfleet.dev",
        )
        if self.kubectl("get", "namespace", NAMESPACE, "--ignore-not-found", "-o", "name"):
            self.kubectl("delete", "namespace", NAMESPACE, "--timeout=90s")
        self.kubectl("create", "namespace", NAMESPACE)
        self.start_operator()
        secret = (EXAMPLES / "secret.yaml").read_text().replace(DSN_PLACEHOLDER, dsn)
        self.kubectl("apply", "-n", NAMESPACE, "-f", "-", stdin=secret)
        for name in ("workerpool.yaml", "monitor.yaml"):
            print(self.kubectl("apply", "-n", NAMESPACE, "-f", str(EXAMPLES / name)).strip())

    def start_operator(self) -> None:
        log_path = self.workdir / "operator.log"
        self.operator = OperatorProcess(self.cluster.kubeconfig, NAMESPACE, log_path)
        print(
            f"operator pid {self.operator.pid}, log {log_path}, "
            f"health :{self.operator.port}/healthz"
        )

    async def enqueue(self, dsn: str) -> int:
        rng = random.Random(7)
        requests = (
            [
                EnqueueRequest(QUEUE, "sleep", {"seconds": round(rng.uniform(0.1, 0.5), 2)})
                for _ in range(SLEEP_JOBS)
            ]
            + [EnqueueRequest(QUEUE, "echo", {"n": n}) for n in range(ECHO_JOBS)]
            + [EnqueueRequest(QUEUE, "cpu", {"seconds": 0.2}) for _ in range(CPU_JOBS)]
            + [
                EnqueueRequest(QUEUE, "fail", {"rate": 0.5}, max_attempts=3)
                for _ in range(FLAKY_JOBS)
            ]
        )
        async with await Connector.open(dsn, min_size=1, max_size=1) as connector:
            ids = await Repository(connector).enqueue_many(requests)
        say(f"enqueued {len(ids)} jobs on queue {QUEUE!r}")
        return len(ids)

    async def remaining(self, dsn: str) -> tuple[int, int, int]:
        """(unfinished, succeeded, dead) of the demo queue."""
        async with await Connector.open(dsn, min_size=1, max_size=1) as connector:
            for row in await Repository(connector).queue_stats():
                if row.queue == QUEUE:
                    unfinished = row.pending + row.scheduled + row.running
                    return unfinished, row.succeeded, row.dead
        return 0, 0, 0

    def show(self) -> None:
        print(
            f"\n-- {time.strftime('%H:%M:%S')}  kubectl get workerpools,monitors -o wide",
            flush=True,
        )
        print(self.kubectl("get", "workerpools,monitors", "-n", NAMESPACE, "-o", "wide"), end="")

    def watch(self, dsn: str, total: int, limit: float | None) -> int:
        say("draining (kubectl get workerpools every few seconds)")
        started = time.monotonic()
        drained_at: float | None = None
        while True:
            self.show()
            unfinished, succeeded, dead = asyncio.run(self.remaining(dsn))
            print(f"   queue: {unfinished} to go, {succeeded} succeeded, {dead} dead of {total}")
            if unfinished == 0 and drained_at is None:
                drained_at = time.monotonic() - started
                say(f"drained: {succeeded} succeeded, {dead} dead-lettered in {drained_at:.0f}s")
                if limit is not None:
                    self.show()
                    return 0
                print("   (Ctrl-C tears everything down)")
            if limit is not None and time.monotonic() - started > limit:
                say(f"not drained within DEMO_SECONDS={limit:.0f}: {unfinished} jobs left")
                print(self.kubectl("describe", "workerpools", "-n", NAMESPACE, check=False))
                return 1
            time.sleep(REFRESH_SECONDS)

    def teardown(self) -> None:
        say("tearing down")
        if self.cluster_up:
            # The operator must still run: it removes its finalizer from the WorkerPool.
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
        if self.postgres is not None:
            self.postgres.destroy()
        if self.cluster_started:
            self.cluster.down()
        print("done")


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C, so a supervisor can stop the demo cleanly too."""

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def demo_seconds() -> float | None:
    raw = os.environ.get("DEMO_SECONDS", "").strip()
    if not raw:
        return None
    seconds = float(raw)
    if seconds <= 0:
        raise ValueError(f"DEMO_SECONDS must be a positive number of seconds, got {raw!r}")
    return seconds


def main() -> int:
    try:
        limit = demo_seconds()
    except ValueError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="workerfleet-demo-") as tmp:
        # The build script's "cached" line would only repeat what `make setup` said.
        demo = Demo(Path(tmp), LocalCluster.from_environment(quiet_build=True))
        code = 1
        with interruptible():
            try:
                demo.start_cluster()
                dsn = demo.start_postgres()
                asyncio.run(migrate(dsn))
                demo.install(dsn)
                total = asyncio.run(demo.enqueue(dsn))
                code = demo.watch(dsn, total, limit)
            except KeyboardInterrupt:
                code = 0
            except Exception as error:
                say(f"demo failed: {error}")
                code = 1
            finally:
                with contextlib.suppress(KeyboardInterrupt):
                    demo.teardown()
        return code


if __name__ == "__main__":
    sys.exit(main())

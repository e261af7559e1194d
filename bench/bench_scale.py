"""``make bench-scale``: workerfleet's autoscaling beside a real KEDA, same cluster, same
PostgreSQL, same worker pods and handlers, one run.

On the local cluster (real kube-apiserver with the aggregation layer, controller-manager
with its HPA controller, node agent running worker pods as processes), each system
sizes the same Deployment of ``workerfleet-worker`` pods (replicas min 0, max 20, 10 jobs
per worker, worker concurrency 10, shutdown grace 10 s) running the ``run_ledger``
tasks (every run of every job written down, so a job run twice shows):

- workerfleet with the default maxScaleUpStep (10) and with a step of 20 (= max);
- KEDA v2.21.0 (its operator and metrics adapter as local processes, localcluster/keda.py)
  with a ScaledObject whose ``postgresql`` trigger counts the depth workerfleet scales
  on (ready pending + running) with targetQueryValue = jobsPerWorker: once with KEDA's
  defaults (pollingInterval 30 s, cooldownPeriod 300 s, the HPA's default behaviour),
  once tuned for fast reaction (pollingInterval 1 s, scale-up without limit);
- KEDA's figures computed from its documented defaults (keda_model.py), kept for when
  KEDA cannot be built or started here (the output then says why).

Scenarios (scale_scenarios.py): burst, ramp, scale-in under load, and a 30 s database
outage. Times are watched events (the Deployment and its pods) and a 100 ms poll of the
queue. Prints figures; asserts nothing. Results also go to ``.bench/scale-results.json``.

    make bench-scale                                   # everything (about 2 hours)
    .venv/bin/python bench/bench_scale.py --table-from a.json b.json   # print saved runs
    .venv/bin/python bench/bench_scale.py --scenarios burst --systems workerfleet-10 keda-fast
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import traceback
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
# Appended, not prepended: the repository's operator/ folder must not shadow the stdlib.
sys.path.append(str(REPO))

import asyncpg  # noqa: E402
import scale_scenarios  # noqa: E402
import scale_systems  # noqa: E402
import scale_table  # noqa: E402
from kubernetes import config as kube_config  # noqa: E402
from scale_runs import SIGKILL_LOG_MARKER, LogCounter, Run, measure  # noqa: E402
from scale_watch import Watched, Watcher  # noqa: E402

from localcluster import keda_manifests, tools  # noqa: E402
from localcluster.control_plane import REPO_ROOT, LocalCluster  # noqa: E402
from localcluster.fixtures import run_ledger  # noqa: E402
from localcluster.keda import Keda, KedaError  # noqa: E402
from workerfleet.operator import builders  # noqa: E402
from workerfleet.worker.migrations import migrate  # noqa: E402

RESULTS_FILE = REPO / ".bench" / "scale-results.json"
DEFAULT_STEP = 10
SYSTEMS = ("workerfleet-10", "workerfleet-20", "keda-defaults", "keda-fast")
AT_ZERO_TIMEOUT_SECONDS = 60.0
NAMESPACE_DELETE_TIMEOUT = "180s"


def make_system(name: str, delay: str) -> scale_systems.System:
    if name.startswith("workerfleet-"):
        return scale_systems.Workerfleet(int(name.split("-", 1)[1]), delay)
    tuning = keda_manifests.FAST if name == "keda-fast" else keda_manifests.DEFAULTS
    return scale_systems.KedaSystem(tuning, delay)


async def _prepare_database(dsn: str) -> None:
    await migrate(dsn)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(run_ledger.LEDGER_DDL)
    finally:
        await connection.close()


async def _ledger(dsn: str) -> tuple[int, int, int]:
    connection = await asyncpg.connect(dsn)
    try:
        return (
            int(await connection.fetchval(run_ledger.RERUNS_SQL)),
            int(await connection.fetchval(run_ledger.RERUN_JOBS_SQL)),
            int(await connection.fetchval(run_ledger.UNFINISHED_SQL)),
        )
    finally:
        await connection.close()


def one_run(
    cluster: LocalCluster,
    api: Any,
    scenario: str,
    system: scale_systems.System,
    handlers_dir: Path,
    logs: Path,
    trickle_seconds: int,
) -> Run:
    run = Run(scenario, system.label)
    namespace = f"bench-{scenario}-{uuid.uuid4().hex[:6]}"
    dsn = cluster.postgres.create_database("bench")
    asyncio.run(_prepare_database(dsn))
    cluster.kubectl("create", "namespace", namespace)
    setup = scale_systems.RunSetup(cluster, namespace, dsn, handlers_dir, logs)
    setup.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": scale_systems.SECRET, "namespace": namespace},
            "stringData": {"dsn": dsn},
        }
    )
    watched = Watched()
    sigkills = LogCounter(cluster.process("node-agent").log_file, SIGKILL_LOG_MARKER)
    selector = builders.selector_string(scale_systems.POOL)
    try:
        system.start(setup)
        with Watcher(api, namespace, scale_systems.POOL, selector, watched):
            if (
                scale_scenarios.wait_until(
                    lambda: watched.replicas_now() == 0, AT_ZERO_TIMEOUT_SECONDS
                )
                is None
            ):
                raise TimeoutError(f"the Deployment was not at 0 replicas: {watched.replicas}")
            moments = scale_scenarios.drive(scenario, setup, system, watched, trickle_seconds)
        measure(run, watched, moments)
        run.extra_runs, run.rerun_jobs, run.cut_off_runs = asyncio.run(_ledger(dsn))
        run.sigkills = sigkills.count()
        run.system_figures = system.figures()
    except Exception as error:
        run.error = f"{type(error).__name__}: {error}"
        (logs / f"error-{namespace}.txt").write_text(traceback.format_exc())
    finally:
        system.stop()
        cluster.postgres.start()  # in case an outage run failed with the database down
        cluster.kubectl(
            "delete",
            "namespace",
            namespace,
            f"--timeout={NAMESPACE_DELETE_TIMEOUT}",
            check=False,
            timeout=300,
        )
    return run


def start_keda(cluster: LocalCluster) -> tuple[Keda | None, str | None, bool]:
    """KEDA up (built first if needed, with the build's progress on the terminal), or
    why not; and whether it was already running."""
    started = time.monotonic()
    try:
        keda = Keda.built(cluster, build=True, quiet=False)
        was_up = keda.is_up()
        keda.up()
    except (tools.ToolError, KedaError) as error:
        return None, str(error), False
    print(f"KEDA up in {time.monotonic() - started:.1f}s (binaries: {keda.bin_dir})", flush=True)
    return keda, None, was_up


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_scale", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scenarios",
        nargs="+",
        choices=scale_scenarios.SCENARIOS,
        default=list(scale_scenarios.SCENARIOS),
    )
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--scale-down-delay", default="120s", help="workerfleet's scaleDownDelay")
    parser.add_argument(
        "--trickle-seconds",
        type=int,
        default=scale_scenarios.TRICKLE_SECONDS,
        help="how long scale-in's steady mix lasts (the default outlasts KEDA's 300 s "
        "scale-down stabilization, so every system shrinks under load)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS_FILE,
        help="where the runs are written as JSON, after each run",
    )
    parser.add_argument(
        "--table-from",
        type=Path,
        nargs="+",
        metavar="RESULTS",
        help="print the table of runs written earlier (--results files, such as two parts "
        "run on separate clusters) and run nothing",
    )
    args = parser.parse_args(argv)
    if args.table_from:
        saved = [Run(**run) for path in args.table_from for run in json.loads(path.read_text())]
        scale_table.print_table(saved, args.scale_down_delay, args.trickle_seconds, None)
        return 0
    cluster = LocalCluster.from_environment(quiet_build=True)
    was_up = cluster.is_up()
    cluster.up()
    logs = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    names = list(args.systems)
    keda: Keda | None = None
    keda_missing: str | None = None
    keda_was_up = False
    if any(name.startswith("keda-") for name in names):
        keda, keda_missing, keda_was_up = start_keda(cluster)
        if keda is None:
            print(f"Real KEDA not run: {keda_missing}", flush=True)
            names = [name for name in names if not name.startswith("keda-")]
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
            for name in names:
                system = make_system(name, args.scale_down_delay)
                print(f"{time.strftime('%H:%M:%S')} {scenario}: {system.label} ...", flush=True)
                run = one_run(
                    cluster, api, scenario, system, handlers_dir, logs, args.trickle_seconds
                )
                print(f"    {run.error or 'done'}", flush=True)
                runs.append(run)
                args.results.parent.mkdir(parents=True, exist_ok=True)
                args.results.write_text(json.dumps([asdict(r) for r in runs], indent=1))
    finally:
        if keda is not None and not keda_was_up:
            keda.down()
        if not was_up:
            cluster.down()
    scale_table.print_table(runs, args.scale_down_delay, args.trickle_seconds, keda_missing)
    print(f"\nlogs: {logs}; KEDA's: {cluster.logs_dir}/keda-*.log")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``workerfleet-operator``: the kopf operator process.

All kopf settings are made in the one startup handler below. The process also
serves /healthz (a liveness verdict that notices a silent watch, see
``liveness.py``), /readyz and /metrics on its health port, and closes the
connection pools of queue databases no pool uses any more (a rotated DSN).

With leader election on (``WORKERFLEET_OPERATOR_LEADER_ELECTION=true``, as the
chart runs it), the process stands by until it holds the Lease and only then
starts kopf; if it cannot renew the Lease in time it exits at once (exit code 3),
so two replicas never act together. See ``leadership.py``.

    workerfleet-operator                      # all namespaces
    workerfleet-operator -n team-a -n team-b  # only these
    workerfleet-operator check --namespace NS --selector S   # see health_check.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import uuid
from typing import Any

import kopf
import pydantic
from kubernetes.config import ConfigException

from workerfleet.operator import handlers as _handlers  # noqa: F401  (registers handlers)
from workerfleet.operator import health, health_check, metrics, models
from workerfleet.operator import monitor as _monitor  # noqa: F401  (registers handlers)
from workerfleet.operator.kube import api_client
from workerfleet.operator.leadership import ApiLeaseStore, Leadership, own_namespace
from workerfleet.operator.runtime import Runtime
from workerfleet.operator.settings import ENV_PREFIX, OperatorSettings

WATCH_CONNECT_TIMEOUT_SECONDS = 10.0
# The apiserver ends a watch after server_timeout; the client gives it this much longer.
WATCH_CLIENT_MARGIN_SECONDS = 30.0
EXECUTOR_THREADS = 8
# The exit code when leadership is lost: the container restarts and stands by again.
LEADERSHIP_LOST_EXIT_CODE = 3

logger = logging.getLogger(__name__)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    """Every kopf setting, in one place."""
    ours: OperatorSettings = memo.runtime.settings
    # Progress and diff-base in annotations: the status belongs to the rollup, and an
    # unknown status.kopf field would be pruned by the structural schema.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=models.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=models.GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{models.GROUP}/finalizer"
    settings.watching.server_timeout = int(ours.watch_server_timeout)  # the API wants an integer
    settings.watching.client_timeout = ours.watch_server_timeout + WATCH_CLIENT_MARGIN_SECONDS
    settings.watching.inactivity_timeout = ours.watch_inactivity_timeout
    settings.watching.connect_timeout = WATCH_CONNECT_TIMEOUT_SECONDS
    settings.networking.request_timeout = ours.request_timeout
    # Only explicit Events (kopf.event); handler log lines stay in the log.
    settings.posting.loggers = False
    settings.posting.level = logging.INFO
    # Serving named namespaces there is nothing to discover: listing and watching every
    # namespace (and CRD) would need cluster-wide rights for nothing. The CRDs are the
    # ones installed when the operator starts.
    settings.scanning.disabled = serves_named_namespaces(ours.namespaces)
    # Leader election is ours (leadership.py); kopf's peering objects are not used.
    settings.peering.standalone = True
    settings.peering.mandatory = False
    settings.execution.max_workers = EXECUTOR_THREADS
    memo.runtime.readiness.serving = True
    logger.info(
        "workerfleet operator configured",
        extra={"namespaces": list(ours.namespaces) or "all", "health_port": ours.health_port},
    )


def serves_named_namespaces(namespaces: tuple[str, ...]) -> bool:
    """Namespaces given by name only (kopf also takes globs and negations)."""
    return bool(namespaces) and not any(set(name) & set("*?[]!") for name in namespaces)


@kopf.on.cleanup()
async def shutdown(memo: Any, **_: Any) -> None:
    memo.runtime.readiness.serving = False
    memo.runtime.readiness.role = "stopping"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="workerfleet-operator", description=__doc__)
    parser.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="serve only this namespace (repeatable); default: "
        "$WORKERFLEET_OPERATOR_NAMESPACES, else all namespaces",
    )
    parser.add_argument(
        "--health-port", type=int, help="overrides WORKERFLEET_OPERATOR_HEALTH_PORT"
    )
    return parser.parse_args(argv)


def load_settings(args: argparse.Namespace) -> OperatorSettings:
    overrides: dict[str, Any] = {}
    if args.namespace:
        overrides["namespaces"] = tuple(args.namespace)
    if args.health_port:
        overrides["health_port"] = args.health_port
    return OperatorSettings(**overrides)


def setup_logging(settings: OperatorSettings) -> None:
    log_format = kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL
    kopf.configure(
        verbose=settings.log_level == "DEBUG",
        log_format=log_format,
        log_refkey="object",
    )
    logging.getLogger().setLevel(settings.log_level)
    if settings.log_level != "DEBUG":
        # kopf logs every handler and timer success per object at INFO: once a second per pool.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    # aiohttp's access log and the kubernetes client's debug chatter are noise here.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def leadership_of(settings: OperatorSettings, runtime: Runtime) -> Leadership | None:
    """The Lease this process must hold to act, or None when leader election is off."""
    if not settings.leader_election:
        return None
    namespace = settings.lease_namespace or own_namespace()
    if not namespace:
        raise ValueError(
            f"{ENV_PREFIX}LEASE_NAMESPACE is empty and this process does not run in a pod: "
            "name the namespace of the leader Lease"
        )
    timing = settings.lease_timing
    store = ApiLeaseStore(api_client(), namespace, settings.lease_name, timing.renew_deadline / 2)
    identity = f"{settings.pod_name or socket.gethostname()}_{uuid.uuid4().hex[:8]}"

    def seen(holder: str | None) -> None:
        runtime.readiness.leader = holder

    return Leadership(store, identity, timing, on_holder=seen)


def lose_leadership(reason: str) -> None:
    """Stop acting now: another replica may take the Lease once it expires, and by then
    this process must be gone. The container restarts and stands by again."""
    logger.critical("leader lease lost (%s): exiting so that only one operator acts", reason)
    logging.shutdown()
    os._exit(LEADERSHIP_LOST_EXIT_CODE)


async def run(settings: OperatorSettings, runtime: Runtime) -> None:
    readiness = runtime.readiness
    server = await health.serve(
        health.application(runtime.activity, readiness),
        settings.health_host,
        settings.health_port,
    )
    # kopf installs its own handlers once it runs; until then (standing by) these stop us.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # Created before kopf starts, so kopf leaves these tasks alone when it stops.
    close_idle = asyncio.create_task(
        runtime.inspector.close_idle_forever(), name="close idle queue databases"
    )
    leadership = leadership_of(settings, runtime)
    holding: asyncio.Task[None] | None = None
    try:
        if leadership is not None:
            readiness.role = "standby"
            metrics.LEADER.set(0)
            if not await leadership.acquire(stop):
                return
            holding = asyncio.create_task(leadership.hold(lose_leadership), name="hold lease")
        readiness.role = "leader" if leadership is not None else "standalone"
        metrics.LEADER.set(1)
        await kopf.operator(
            clusterwide=not settings.namespaces,
            namespaces=list(settings.namespaces),
            standalone=True,
            stop_flag=stop,
            memo=kopf.Memo(runtime=runtime),
        )
    finally:
        readiness.role = "stopping"
        for task in (close_idle, holding):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if leadership is not None:
            await leadership.release()
        metrics.LEADER.set(0)
        await server.cleanup()
        await runtime.close()


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["check"]:
        return health_check.main(arguments[1:])
    args = parse_args(arguments)
    try:
        settings = load_settings(args)
    except pydantic.ValidationError as error:
        for item in error.errors():
            field = "_".join(str(part) for part in item["loc"]).upper()
            where = f"{ENV_PREFIX}{field}: " if field else ""
            print(f"workerfleet-operator: {where}{item['msg']}", file=sys.stderr)
        return 1
    setup_logging(settings)
    try:
        runtime = Runtime.create(settings)
    except ConfigException as error:
        print(f"workerfleet-operator: no Kubernetes credentials: {error}", file=sys.stderr)
        return 1
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run(settings, runtime))
    except ValueError as error:
        print(f"workerfleet-operator: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

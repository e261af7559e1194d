"""``workerfleet-operator``: the kopf operator process.

All kopf settings are made in the one startup handler below. The process also
serves /healthz (a liveness verdict that notices a silent watch, see
``liveness.py``), /readyz and /metrics on its health port, and closes the
connection pools of queue databases no pool uses any more (a rotated DSN).

    workerfleet-operator                      # all namespaces
    workerfleet-operator -n team-a -n team-b  # only these
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from typing import Any

import kopf
import pydantic
from kubernetes.config import ConfigException

from workerfleet.operator import handlers as _handlers  # noqa: F401  (registers handlers)
from workerfleet.operator import health, kopf_glue, models
from workerfleet.operator import monitor as _monitor  # noqa: F401  (registers handlers)
from workerfleet.operator import schedule_daemon as _schedules  # noqa: F401  (registers handlers)
from workerfleet.operator.runtime import Runtime
from workerfleet.operator.settings import ENV_PREFIX, OperatorSettings

kopf_glue.release_timer_finalizers(kopf.get_default_registry())

WATCH_CONNECT_TIMEOUT_SECONDS = 10.0
# The apiserver ends a watch after server_timeout; the client gives it this much longer.
WATCH_CLIENT_MARGIN_SECONDS = 30.0
EXECUTOR_THREADS = 8

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
    # One operator per cluster (or per namespace list); no peering objects needed.
    settings.peering.standalone = True
    settings.peering.mandatory = False
    settings.execution.max_workers = EXECUTOR_THREADS
    memo.runtime.ready[0] = True
    logger.info(
        "workerfleet operator configured",
        extra={"namespaces": list(ours.namespaces) or "all", "health_port": ours.health_port},
    )


@kopf.on.cleanup()
async def shutdown(memo: Any, **_: Any) -> None:
    memo.runtime.ready[0] = False


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


async def run(settings: OperatorSettings, runtime: Runtime) -> None:
    server = await health.serve(
        health.application(runtime.activity, runtime.ready),
        settings.health_host,
        settings.health_port,
    )
    close_idle = asyncio.create_task(
        runtime.inspector.close_idle_forever(), name="close idle queue databases"
    )
    try:
        await kopf.operator(
            clusterwide=not settings.namespaces,
            namespaces=list(settings.namespaces),
            standalone=True,
            memo=kopf.Memo(runtime=runtime),
        )
    finally:
        close_idle.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await close_idle
        await server.cleanup()
        await runtime.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load_settings(args)
    except pydantic.ValidationError as error:
        for item in error.errors():
            field = "_".join(str(part) for part in item["loc"]).upper()
            print(
                f"workerfleet-operator: {ENV_PREFIX}{field}: {item['msg']}",
                file=sys.stderr,
            )
        return 1
    setup_logging(settings)
    try:
        runtime = Runtime.create(settings)
    except ConfigException as error:
        print(f"workerfleet-operator: no Kubernetes credentials: {error}", file=sys.stderr)
        return 1
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(settings, runtime))
    return 0


if __name__ == "__main__":
    sys.exit(main())

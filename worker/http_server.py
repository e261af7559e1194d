"""The probe and metrics server: /healthz, /readyz, /health, /metrics.

Small on purpose: four GET routes on aiohttp (already a dependency of kopf),
no access log (probes every few seconds would drown the job events).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from workerfleet.worker.health import HTTP_OK, HTTP_UNAVAILABLE, Verdict
from workerfleet.worker.logging_setup import LOGGER_NAME

SHUTDOWN_TIMEOUT_SECONDS = 2.0

log = logging.getLogger(LOGGER_NAME + ".http")


@dataclass(frozen=True)
class Endpoints:
    liveness: Callable[[], Verdict]
    readiness: Callable[[], Verdict]
    report: Callable[[], Awaitable[tuple[int, dict[str, Any]]]]
    metrics: Callable[[], bytes]


def _probe(verdict: Verdict) -> web.Response:
    return web.json_response(
        {"status": "ok" if verdict.ok else "fail", "reason": verdict.reason},
        status=HTTP_OK if verdict.ok else HTTP_UNAVAILABLE,
    )


def build_app(endpoints: Endpoints) -> web.Application:
    async def healthz(_request: web.Request) -> web.Response:
        return _probe(endpoints.liveness())

    async def readyz(_request: web.Request) -> web.Response:
        return _probe(endpoints.readiness())

    async def health(_request: web.Request) -> web.Response:
        code, body = await endpoints.report()
        return web.Response(
            text=json.dumps(body, default=str),
            status=code,
            content_type="application/json",
        )

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=endpoints.metrics(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/livez", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    return app


class HealthServer:
    def __init__(self, host: str, port: int, endpoints: Endpoints) -> None:
        self.host, self.port = host, port
        self._runner = web.AppRunner(
            build_app(endpoints), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS
        )

    async def start(self) -> None:
        """Bind the port; an OSError here (port taken) is a startup failure."""
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        log.info("probe server listening", extra={"host": self.host, "port": self.port})

    async def close(self) -> None:
        await self._runner.cleanup()

"""The operator's HTTP endpoints: /healthz (liveness), /readyz and /metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from workerfleet.operator.liveness import Activity

Role = Literal["starting", "standby", "leader", "standalone", "stopping"]


@dataclass
class Readiness:
    """What /readyz reports. A standby is ready (it serves /metrics and may be evicted
    like any replica: a PodDisruptionBudget counts it) and says that it stands by."""

    role: Role = "starting"
    serving: bool = False
    """kopf is configured and handling objects (leader or standalone)."""
    leader: str | None = None
    """The Lease holder as last seen, when leader election is on."""

    def report(self) -> tuple[int, dict[str, Any]]:
        ready = self.role == "standby" or (self.role in ("leader", "standalone") and self.serving)
        body: dict[str, Any] = {"ready": ready, "role": self.role}
        if self.role in ("standby", "leader"):
            body["leader"] = self.leader
        return (200 if ready else 503), body


def application(activity: Activity, readiness: Readiness) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        verdict = activity.verdict()
        return web.json_response(
            {"status": "ok" if verdict.ok else "stale", "reason": verdict.reason},
            status=200 if verdict.ok else 503,
        )

    async def readyz(_: web.Request) -> web.Response:
        status, body = readiness.report()
        return web.json_response(body, status=status)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner

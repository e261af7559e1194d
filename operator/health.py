"""The operator's HTTP endpoints: /healthz (liveness), /readyz and /metrics."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from workerfleet.operator.liveness import Activity


def application(activity: Activity, ready: list[bool]) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        verdict = activity.verdict()
        return web.json_response(
            {"status": "ok" if verdict.ok else "stale", "reason": verdict.reason},
            status=200 if verdict.ok else 503,
        )

    async def readyz(_: web.Request) -> web.Response:
        started = bool(ready and ready[0])
        return web.json_response({"ready": started}, status=200 if started else 503)

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

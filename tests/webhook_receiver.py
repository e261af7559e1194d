"""A real HTTP webhook receiver on loopback for the notification tests.

It runs an aiohttp server in a thread of its own (so synchronous e2e tests can
use it as well as async ones), answers each POST with the next scripted reply
(then 200), and records every request: path, headers, JSON body, and when it
arrived. A reply can hang (never answer while the test runs).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from localcluster.loopback import LOOPBACK, free_port
from localcluster.waiting import wait_for

SECRET_PATH = "/services/T0WORKERFLEET/B0TEST/s3cr3t-t0ken"
"""A path shaped like a Slack hook's: the token in it must never show anywhere."""


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False


@dataclass(frozen=True)
class Received:
    path: str
    content_type: str
    body: Any
    at: float
    """time.monotonic() when it arrived."""


class WebhookReceiver:
    def __init__(self, replies: list[Reply] | None = None) -> None:
        self.port = free_port()
        self.replies = list(replies or [])
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._release: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._serve, name="webhook-receiver", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}{SECRET_PATH}"

    def start(self) -> WebhookReceiver:
        self._thread.start()
        if not self._started.wait(timeout=10):
            raise RuntimeError("the webhook receiver did not start")
        return self

    def stop(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def bodies(self) -> list[Any]:
        with self._lock:
            return [r.body for r in self.received]

    def requests(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def wait_for_requests(self, count: int, timeout: float = 30) -> list[Received]:
        def enough() -> list[Received] | None:
            found = self.requests()
            return found if len(found) >= count else None

        return wait_for(f"{count} requests at the webhook receiver", enough, timeout=timeout)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, LOOPBACK, self.port).start())
        self._started.set()
        try:
            self._loop.run_forever()
        finally:
            self._release.set()
            self._loop.run_until_complete(runner.cleanup())
            self._loop.close()

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        with self._lock:
            self.received.append(
                Received(request.path, request.content_type, body, time.monotonic())
            )
            reply = self.replies.pop(0) if self.replies else Reply()
        if reply.hang:
            assert self._release is not None
            await self._release.wait()  # until the receiver stops
        return web.Response(status=reply.status, headers=reply.headers, text="ok")

"""Every Monitor's outbox, and the one HTTP session they send through."""

from __future__ import annotations

import asyncio

import aiohttp

from workerfleet.operator.notifications import payloads, webhook
from workerfleet.operator.notifications.outbox import Outbox, RetryPolicy, Target
from workerfleet.operator.notifications.payloads import Notification

# Idle keep-alive connections to webhook hosts are closed after this long.
KEEPALIVE_SECONDS = 30.0


class Notifier:
    def __init__(self, policy: RetryPolicy | None = None) -> None:
        self.policy = policy or RetryPolicy()
        self._outboxes: dict[str, Outbox] = {}
        self._session: aiohttp.ClientSession | None = None

    def outbox(self, key: str) -> Outbox:
        """The outbox of the Monitor ``key`` (namespace/name), created on first use."""
        found = self._outboxes.get(key)
        if found is None:
            found = self._outboxes[key] = Outbox(self.send, policy=self.policy)
        return found

    async def forget(self, key: str) -> None:
        """The Monitor is gone: stop its deliveries."""
        outbox = self._outboxes.pop(key, None)
        if outbox is not None:
            await outbox.close()

    async def send(self, target: Target, notification: Notification) -> webhook.Attempt:
        body = payloads.body(target.format, notification)
        return await webhook.post_json(self._http(), target.url, body, target.timeout_seconds)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(keepalive_timeout=KEEPALIVE_SECONDS),
                # The operator's environment may carry a proxy for the API server; a
                # webhook goes where its URL says, like any HTTP client with trust_env.
                trust_env=True,
            )
        return self._session

    async def close(self) -> None:
        await asyncio.gather(*(outbox.close() for outbox in self._outboxes.values()))
        self._outboxes.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

"""LISTEN on the jobs channel: an enqueue wakes an idle worker at once.

Polling at the poll interval stays on as the fallback, so a lost connection
only costs latency; the listener reconnects with backoff and, once back,
wakes the loop to pick up anything enqueued while it was away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from workerfleet.worker import connector, retry
from workerfleet.worker.health import RuntimeState
from workerfleet.worker.logging_setup import LOGGER_NAME
from workerfleet.worker.metrics import WorkerMetrics
from workerfleet.worker.repository import NOTIFY_CHANNEL, WORKERS_CHANNEL

CLOSE_TIMEOUT_SECONDS = 2.0

log = logging.getLogger(LOGGER_NAME + ".listener")


def concerns_us(payload: str, queues: Sequence[str]) -> bool:
    """A NOTIFY payload names a queue; an empty payload wakes everyone."""
    return not payload or payload in queues


class Listener:
    def __init__(
        self,
        dsn: str,
        queues: Sequence[str],
        on_wake: Callable[[], None],
        state: RuntimeState,
        metrics: WorkerMetrics,
        on_row_changed: Callable[[], None] = lambda: None,
    ) -> None:
        self.dsn = dsn
        self.queues = tuple(queues)
        self.on_wake = on_wake
        self.state = state
        self.metrics = metrics
        self.on_row_changed = on_row_changed

    def _on_notify(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        if concerns_us(payload, self.queues):
            self.metrics.notifications.inc()
            self.on_wake()

    def _on_worker_notify(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload == self.state.worker_id:
            self.on_row_changed()

    async def run(self, stop: asyncio.Event) -> None:
        backoff = connector.reconnect_backoff()
        while not stop.is_set():
            try:
                await self._listen_until_lost(stop, backoff)
            except connector.TRANSIENT_ERRORS as exc:
                if backoff.failures == 0:
                    log.warning(
                        "LISTEN connection lost; polling meanwhile, reconnecting",
                        extra={"error": connector.describe_error(exc)},
                    )
            self.state.listener_connected = False
            if stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff.next_delay()):
                    await stop.wait()

    async def _listen_until_lost(self, stop: asyncio.Event, backoff: retry.Backoff) -> None:
        connection = await connector.connect(self.dsn)
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _connection: lost.set())
        try:
            await connection.add_listener(NOTIFY_CHANNEL, self._on_notify)
            # The operator's drain requests: the heartbeat reads the row at once.
            await connection.add_listener(WORKERS_CHANNEL, self._on_worker_notify)
            self.state.listener_connected = True
            backoff.reset()
            log.debug("listening", extra={"channel": NOTIFY_CHANNEL})
            self.on_wake()  # whatever was enqueued while we were not listening
            self.on_row_changed()  # and a drain asked meanwhile
            waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(lost.wait())}
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
            if lost.is_set() and not stop.is_set():
                raise ConnectionError("the LISTEN connection was closed")
        finally:
            self.state.listener_connected = False
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
                    await connection.close()

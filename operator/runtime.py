"""What the handlers share: settings, clients, the queue inspector, liveness bookkeeping.

One Runtime per operator process, handed to kopf as the operator-level memo
(``memo.runtime``); per-object state lives in each object's own memo.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from workerfleet.operator.health import Readiness
from workerfleet.operator.inspector import QueueInspector
from workerfleet.operator.kube import Kube, api_client
from workerfleet.operator.liveness import Activity
from workerfleet.operator.notifications.notifier import Notifier
from workerfleet.operator.secrets import SecretReader
from workerfleet.operator.settings import OperatorSettings


@dataclass
class Runtime:
    settings: OperatorSettings
    kube: Kube
    secrets: SecretReader
    inspector: QueueInspector
    activity: Activity
    readiness: Readiness = field(default_factory=Readiness)
    notifier: Notifier = field(default_factory=Notifier)
    """Every Monitor's webhook outbox."""
    changed_at: dict[tuple[str, str], float] = field(default_factory=dict)
    """When a pool's pods or Deployment last changed (monotonic), to sync it early."""

    def child_changed(self, namespace: str, pool: str) -> None:
        self.changed_at[(namespace, pool)] = time.monotonic()

    @classmethod
    def create(cls, settings: OperatorSettings) -> Runtime:
        kube = Kube(api_client(), settings.request_timeout)
        return cls(
            settings=settings,
            kube=kube,
            secrets=SecretReader(kube.read_secret_data),
            inspector=QueueInspector(dead_after_seconds=settings.dead_worker_after),
            activity=Activity(
                tick_stale_seconds=settings.tick_stale_after,
                watch_silence_seconds=settings.watch_silence_after,
            ),
        )

    async def close(self) -> None:
        await self.notifier.close()
        await self.inspector.close()
        self.kube.close()


@dataclass
class PoolState:
    """In-memory state of one WorkerPool (kopf keeps it in the object's memo).

    No backoff lives here: the inspector backs off per database, the Secret
    reader per Secret, whichever pools share them.
    """

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    written_generation: int | None = None
    """The Deployment generation the operator's last apply produced."""
    deployment_uid: str | None = None
    short_since: datetime | None = None
    synced_at: float | None = None
    """When the last sync started (monotonic)."""
    service_account_applied: bool = False
    """This process applied the workers' ServiceAccount since it started or the spec changed."""


@dataclass
class MonitorState:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_run: float | None = None
    incidents: list[dict[str, Any]] | None = None
    """status.incidents as this process last wrote them: the watch may not have brought
    that write back by the next run, and an incident must not fire twice."""
    written_last_run: str | None = None
    """status.lastRun of that write."""

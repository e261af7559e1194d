"""What the handlers share: settings, clients, the queue inspector, liveness bookkeeping.

One Runtime per operator process, handed to kopf as the operator-level memo
(``memo.runtime``); per-object state lives in each object's own memo.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from workerfleet.operator import scale_in, scaling
from workerfleet.operator.health import Readiness
from workerfleet.operator.incarnations import Released
from workerfleet.operator.inspector import QueueInspector
from workerfleet.operator.kube import Kube, api_client
from workerfleet.operator.liveness import Activity
from workerfleet.operator.notifications.notifier import Notifier
from workerfleet.operator.queue_events import QueueEvent, QueueEvents
from workerfleet.operator.scale_events import ScaleEvents
from workerfleet.operator.secrets import SecretReader
from workerfleet.operator.settings import OperatorSettings
from workerfleet.operator.triggers import Triggers
from workerfleet.operator.views import DeploymentView

PoolKey = tuple[str, str]
Scaler = Callable[[float], Awaitable[None]]
"""Evaluates one pool's scale now, its queue read newer than the moment passed."""


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
    released: Released = field(default_factory=Released)
    """Dead worker incarnations already released, and the pod states already looked at."""
    queue_events: QueueEvents = field(default_factory=QueueEvents)
    """One LISTEN connection per queue database, shared by its pools."""
    scalers: dict[PoolKey, Scaler] = field(default_factory=dict)
    """Each pool's evaluation outside kopf's handlers (set by the handlers, latest body)."""
    triggers: Triggers = field(init=False)

    def __post_init__(self) -> None:
        self.triggers = Triggers(self._evaluate)

    def child_changed(self, namespace: str, pool: str) -> None:
        self.changed_at[(namespace, pool)] = time.monotonic()

    def listen(self, key: PoolKey, dsn: str, queue: str) -> None:
        """Evaluate the pool at once whenever its queue's database says something changed."""

        def on_event(event: QueueEvent) -> None:
            if event.kind == "connected":
                self.inspector.retry_now(dsn)  # the database is evidently back
            self.triggers.poke(key, event.received_at)

        self.queue_events.subscribe(key, dsn, queue, on_event)

    def forget_pool(self, key: PoolKey) -> None:
        self.queue_events.unsubscribe(key)
        self.triggers.forget(key)
        self.scalers.pop(key, None)
        self.changed_at.pop(key, None)

    async def _evaluate(self, key: Hashable, since: float) -> None:
        scaler = self.scalers.get(cast(PoolKey, key))  # triggers are keyed by pool
        if scaler is not None:
            await scaler(since)

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
        await self.triggers.close()
        await self.queue_events.close()
        await self.notifier.close()
        await self.inspector.close()
        self.kube.close()


@dataclass
class PoolScaling:
    """What one pool's scaling remembers, in memory: a restarted operator starts afresh
    (a fresh scale-down window, and a look for drains a previous process left behind)."""

    history: scaling.History = field(default_factory=scaling.History)
    decision: scaling.Decision | None = None
    evaluated_at: float | None = None
    read_queue: bool = False
    """Whether the last decision could read the queue."""
    poll_seconds: float | None = None
    """spec.scaling.pollInterval, as last parsed."""
    dsn: str | None = None
    held: str | None = None
    """Why the last scale-in kept more workers than decided."""
    in_flight: scale_in.InFlight | None = None
    left_draining: set[str] = field(default_factory=set)
    """Workers asked to drain that are not part of a scale-in under way (they claimed a
    job in the race, or the drain's round was given up): given back when not needed."""
    drains_checked: bool = False
    last_scale_at: datetime | None = None
    events: ScaleEvents = field(default_factory=ScaleEvents)
    applied: DeploymentView | None = None
    """The Deployment as the operator's last apply returned it (the watch may lag)."""


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
    scaling: PoolScaling = field(default_factory=PoolScaling)


@dataclass
class MonitorState:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_run: float | None = None
    incidents: list[dict[str, Any]] | None = None
    """status.incidents as this process last wrote them: the watch may not have brought
    that write back by the next run, and an incident must not fire twice."""
    written_last_run: str | None = None
    """status.lastRun of that write."""

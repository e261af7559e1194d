"""What the handlers share: settings, clients, the queue inspector, liveness bookkeeping,
and every WorkerPool and Monitor the watch shows, with the one scheduler that times them.

One Runtime per operator process, handed to kopf as the operator-level memo
(``memo.runtime``). Per-object state lives in :attr:`Runtime.pools` and
:attr:`Runtime.monitors`, entered and left with the objects' watch events: kopf's
per-object memo and timers are not used, so an object deleted without a
finalizer is forgotten at once and nothing of it runs on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Protocol, cast

from workerfleet.operator import metrics, scale_in, scaling
from workerfleet.operator.apply_backoff import ApplyFailures
from workerfleet.operator.health import Readiness
from workerfleet.operator.incarnations import Released
from workerfleet.operator.inspector import QueueInspector
from workerfleet.operator.kube import Kube, api_client
from workerfleet.operator.liveness import Activity
from workerfleet.operator.notifications.notifier import Notifier
from workerfleet.operator.queue_events import QueueEvent, QueueEvents
from workerfleet.operator.scale_events import ScaleEvents
from workerfleet.operator.scheduler import Scheduler
from workerfleet.operator.secrets import SecretReader
from workerfleet.operator.settings import OperatorSettings
from workerfleet.operator.stats_rounds import StatsRounds
from workerfleet.operator.triggers import Triggers, Work
from workerfleet.operator.views import DeploymentView

# A pool the watch shows is synced by kopf's create or resume handler at once; if that
# never happens (kopf gave up on it), the scheduler syncs it after this long.
FIRST_SYNC_GRACE_SECONDS = 10.0

PoolKey = tuple[str, str]
PoolWork = Callable[["Runtime", PoolKey, Work], Awaitable[None]]
"""Syncs one pool for the work its triggers asked (``handlers.run_pool_work``)."""
MonitorRun = Callable[["Runtime", PoolKey], Coroutine[Any, Any, None]]
"""Runs one Monitor whose interval is due (``monitor.run_due``)."""
ScheduleRun = Callable[["Runtime", PoolKey], Coroutine[Any, Any, None]]
"""Runs one step of a pool's spec.schedules (``schedule_timer.run_due``)."""
POOL, MONITOR, SCHEDULES = "pool", "monitor", "schedules"


class Schedules(Protocol):
    """A pool's spec.schedules state (``schedule_timer.PoolScheduler``)."""

    async def close(self) -> None: ...


def _no_index() -> Mapping[Any, Any]:
    return MappingProxyType({})


@dataclass
class Indexes:
    """kopf's indexes, as live mappings the watches keep current (kopf hands them to every
    handler; the first handler call leaves them here for work done outside kopf)."""

    pods: Mapping[Any, Any] = field(default_factory=_no_index)
    deployments: Mapping[Any, Any] = field(default_factory=_no_index)
    services: Mapping[Any, Any] = field(default_factory=_no_index)
    pool_refs: Mapping[Any, Any] = field(default_factory=_no_index)
    monitor_refs: Mapping[Any, Any] = field(default_factory=_no_index)


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
    released: Released = field(default_factory=Released)
    """Dead worker incarnations already released, and the pod states already looked at."""
    queue_events: QueueEvents = field(default_factory=QueueEvents)
    """One LISTEN connection per queue database, shared by its pools."""
    pools: dict[PoolKey, PoolEntry] = field(default_factory=dict)
    """Every WorkerPool the watch shows, with its latest body and in-memory state."""
    monitors: dict[PoolKey, MonitorEntry] = field(default_factory=dict)
    indexes: Indexes = field(default_factory=Indexes)
    pool_work: PoolWork | None = None
    monitor_run: MonitorRun | None = None
    schedules_run: ScheduleRun | None = None
    triggers: Triggers = field(init=False)
    scheduler: Scheduler = field(init=False)
    rounds: StatsRounds = field(init=False)
    _tasks: set[asyncio.Task[None]] = field(init=False, default_factory=set)
    """Monitor runs, schedule steps and clean-ups under way."""

    def __post_init__(self) -> None:
        self.triggers = Triggers(self._work)
        self.scheduler = Scheduler(self._fire, on_wake=self.activity.tick)
        self.rounds = StatsRounds(self.inspector, self._figures_changed)

    # -- the objects ----------------------------------------------------------------------

    def pool_seen(self, key: PoolKey, body: Mapping[str, Any]) -> PoolEntry:
        """The watch showed WorkerPool ``key``: keep its latest body (a new uid is a new
        pool: fresh state)."""
        self.scheduler.start()
        entry = self.pools.get(key)
        uid = body.get("metadata", {}).get("uid")
        if entry is None or entry.uid != uid:
            if entry is not None:
                self.forget_pool(key)
            entry = self.pools[key] = PoolEntry(dict(body), PoolState())
            # Its first sync comes from kopf's create/resume handler; this is the safety net.
            self.scheduler.earliest((POOL, key), time.monotonic() + FIRST_SYNC_GRACE_SECONDS)
            metrics.SCHEDULED_OBJECTS.labels(kind=POOL).set(len(self.pools))
            return entry
        generation = body.get("metadata", {}).get("generation")
        if generation != entry.body.get("metadata", {}).get("generation"):
            self.scheduler.set((SCHEDULES, key), time.monotonic())  # the schedules may differ
        entry.body = dict(body)
        return entry

    def forget_pool(self, key: PoolKey) -> None:
        """The pool is gone: nothing of it is due, poked, listened to or read any more, and its
        schedules leave the database."""
        entry = self.pools.pop(key, None)
        self.scheduler.remove((POOL, key))
        self.scheduler.remove((SCHEDULES, key))
        if entry is not None and entry.schedules is not None:
            self._spawn(entry.schedules.close(), f"forget the schedules of {key}")
        self.queue_events.unsubscribe(key)
        self.rounds.detach(key)
        self.triggers.forget(key)
        metrics.SCHEDULED_OBJECTS.labels(kind=POOL).set(len(self.pools))

    def monitor_seen(self, key: PoolKey, body: Mapping[str, Any]) -> MonitorEntry:
        """The watch showed Monitor ``key``; a new one, or a new generation of its spec, runs
        at once."""
        self.scheduler.start()
        entry = self.monitors.get(key)
        meta = body.get("metadata", {})
        if entry is None or entry.uid != meta.get("uid"):
            entry = self.monitors[key] = MonitorEntry(dict(body), MonitorState())
            metrics.SCHEDULED_OBJECTS.labels(kind=MONITOR).set(len(self.monitors))
        entry.body = dict(body)
        if entry.state.generation != meta.get("generation"):
            entry.state.generation = meta.get("generation")
            self.scheduler.set((MONITOR, key), time.monotonic())
        return entry

    def forget_monitor(self, key: PoolKey) -> None:
        self.monitors.pop(key, None)
        self.scheduler.remove((MONITOR, key))
        metrics.SCHEDULED_OBJECTS.labels(kind=MONITOR).set(len(self.monitors))

    # -- what brings a pool's sync forward ------------------------------------------------

    def child_changed(self, namespace: str, pool: str) -> None:
        """A pod, the Deployment or the Service of the pool changed: its status may have."""
        if (namespace, pool) in self.pools:
            self.triggers.poke((namespace, pool), "children")

    def listen(self, key: PoolKey, dsn: str, queue: str) -> None:
        """Sync the pool at once whenever its queue's database says something changed."""

        def on_event(event: QueueEvent) -> None:
            if event.kind == "connected":
                self.inspector.retry_now(dsn)  # the database is evidently back
            self.triggers.poke(key, "notify", event.received_at)

        self.queue_events.subscribe(key, dsn, queue, on_event)

    def _figures_changed(self, key: Hashable, change: str) -> None:
        self.triggers.poke(key, "queue")

    def _fire(self, key: Hashable) -> None:
        kind, object_key = cast(tuple[str, PoolKey], key)
        if kind == POOL and object_key in self.pools:
            self.triggers.poke(object_key, "due")
        elif kind == MONITOR and object_key in self.monitors and self.monitor_run is not None:
            self._spawn(self.monitor_run(self, object_key), f"monitor {object_key}")
        elif kind == SCHEDULES and object_key in self.pools and self.schedules_run is not None:
            self._spawn(self.schedules_run(self, object_key), f"schedules {object_key}")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _work(self, key: Hashable, work: Work) -> None:
        pool = cast(PoolKey, key)  # triggers are keyed by pool
        if pool in self.pools and self.pool_work is not None:
            await self.pool_work(self, pool, work)

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
        await self.scheduler.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.triggers.close()
        await self.rounds.close()
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
    refreshed_at: float | None = None
    """When the last sync that may write the status started (the backstop counts from it)."""
    due_is_backstop: bool = False
    """The pool's due time in the scheduler is the backstop resync (nothing else was due
    sooner): its sync counts as ``backstop``, not ``due``."""
    written_at: float | None = None
    """When this process last wrote the pool's status (monotonic)."""
    written: dict[str, Any] | None = None
    """That write's patch, until the watch shows it (the next sync compares with it)."""
    parsed: tuple[Any, Any] | None = None
    """(spec as the watch showed it, what parsing it gave): parsed once per spec."""
    built: dict[str, tuple[Any, int, dict[str, Any], str]] = field(default_factory=dict)
    """Per kind of child: (parsed spec, replicas, manifest, spec hash) last built."""
    service_account_applied: bool = False
    """This process applied the workers' ServiceAccount since it started or the spec changed."""
    scaling: PoolScaling = field(default_factory=PoolScaling)
    apply_failures: ApplyFailures = field(default_factory=ApplyFailures)


@dataclass
class PoolEntry:
    body: dict[str, Any]
    """The WorkerPool as the watch last showed it."""
    state: PoolState
    schedules: Schedules | None = None

    @property
    def uid(self) -> str | None:
        uid: str | None = self.body.get("metadata", {}).get("uid")
        return uid


@dataclass
class MonitorState:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    generation: int | None = None
    """The spec generation the scheduler last saw (a new one runs at once)."""
    last_run: float | None = None
    incidents: list[dict[str, Any]] | None = None
    """status.incidents as this process last wrote them: the watch may not have brought
    that write back by the next run, and an incident must not fire twice."""
    written_last_run: str | None = None
    """status.lastRun of that write."""


@dataclass
class MonitorEntry:
    body: dict[str, Any]
    """The Monitor as the watch last showed it."""
    state: MonitorState

    @property
    def uid(self) -> str | None:
        uid: str | None = self.body.get("metadata", {}).get("uid")
        return uid

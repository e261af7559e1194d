"""Worker incarnations: which worker rows are dead for certain, as the pods tell it.

A worker's id is its incarnation: pod name + short pod uid + a start nonce, a
new one at every container start. The operator watches the worker pods, and a
pod's status says more than any heartbeat can: a worker container that ended
(waiting to restart, or terminated), that restarted since a worker registered,
or a pod that is gone, means the incarnations that ran there before are dead.
Their jobs go back to the queue at once, seconds after the crash instead of at
lease expiry, and lease expiry stays the fallback for hung or partitioned
workers.

The release is the queue's fenced SQL keyed on the incarnation
(``release_incarnations``): a job moves only while it is still ``running``
under that worker id, so if a verdict were ever wrong, the living worker's
late outcome is fenced out and no job completes twice.

The same knowledge keys the Monitor's restart of hung workers: a pod is
deleted only when the reaped worker is the incarnation the pod runs now, never
because an earlier incarnation in the same pod stopped heartbeating.

Pure decisions first (``pod_life``, ``dead_incarnations``, ``hung_pods``), then
the thin effects the kopf handlers call.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from workerfleet.operator import builders, inspector, metrics
from workerfleet.operator.errors import QueueAccessError
from workerfleet.worker import config as worker_config
from workerfleet.worker.models import WorkerRow

if TYPE_CHECKING:
    from workerfleet.operator.runtime import Runtime
    from workerfleet.worker.repository import Repository

WORKER_CONTAINER = builders.WORKER_CONTAINER
# Container times come from the node's clock, worker rows' started_at from the
# database's. A row counts as older than the container's current start only when
# it registered this much before it, so clocks a little apart never make the
# living incarnation look dead; the margin also covers the API's whole-second times.
CLOCK_MARGIN_SECONDS = 2.0
# Kubernetes reports times in whole seconds (rounded down).
TIMESTAMP_RESOLUTION_SECONDS = 1.0
LIVE_STATES = frozenset({"online", "draining"})
# Verdicts remembered so that no incarnation is released twice (bounded).
REMEMBERED_RELEASES = 10_000

logger = logging.getLogger(__name__)


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class ContainerLife:
    """The worker container as its pod's status tells it."""

    restart_count: int = 0
    running_since: datetime | None = None
    """When the current run started; None while the container does not run."""
    last_ended: datetime | None = None
    """When the latest run ended (the current state's or lastState's terminated)."""
    ready: bool = False
    """Passing readiness: its worker has registered (a new incarnation to compare with)."""

    @property
    def has_ended(self) -> bool:
        """Whether any run of this container has ended (so an incarnation died here)."""
        return self.restart_count > 0 or self.last_ended is not None


@dataclass(frozen=True)
class PodLife:
    """One worker pod's identity and its worker container's life."""

    name: str
    uid: str
    container: ContainerLife | None = None
    """None until the pod's status lists the worker container."""
    gone: bool = False
    """The pod was deleted: nothing runs there any more."""

    @property
    def worker_id_prefix(self) -> str:
        """How the ids of workers started in this pod begin (see worker_config.worker_identity)."""
        short_uid = self.uid.replace("-", "")[: worker_config.POD_UID_SHORT_CHARS]
        return f"{self.name}-{short_uid}-"

    def ran(self, worker_id: str) -> bool:
        """Whether ``worker_id`` is an incarnation of this very pod (name and uid)."""
        return bool(self.uid) and worker_id.startswith(self.worker_id_prefix)

    def replaced(self, row: WorkerRow) -> bool:
        """A row of an earlier pod of the same name: that pod is gone."""
        return bool(self.uid) and row.pod == self.name and not self.ran(row.id)

    @property
    def shows_a_death(self) -> bool:
        """Whether the status says an incarnation died here (worth a look at the rows)."""
        return self.gone or (self.container is not None and self.container.has_ended)

    @property
    def signature(self) -> tuple[object, ...]:
        """What the verdicts depend on: the same signature needs no second look."""
        container = self.container or ContainerLife()
        return (
            self.gone,
            container.restart_count,
            container.running_since,
            container.last_ended,
            container.ready,
        )


def pod_life(meta: Mapping[str, Any], status: Mapping[str, Any], gone: bool = False) -> PodLife:
    """The pod's :class:`PodLife` from its metadata and status (pure)."""
    container = None
    for found in status.get("containerStatuses") or []:
        if found.get("name") == WORKER_CONTAINER:
            container = _container_life(found)
    return PodLife(
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        container=container,
        gone=gone,
    )


def _container_life(status: Mapping[str, Any]) -> ContainerLife:
    state = status.get("state") or {}
    last = (status.get("lastState") or {}).get("terminated") or {}
    running = state.get("running") or {}
    terminated = state.get("terminated") or {}
    return ContainerLife(
        restart_count=int(status.get("restartCount") or 0),
        running_since=_time(running.get("startedAt")) if "running" in state else None,
        last_ended=_time(terminated.get("finishedAt")) or _time(last.get("finishedAt")),
        ready=bool(status.get("ready")),
    )


@dataclass(frozen=True)
class Verdict:
    """A worker incarnation found dead, and how we know."""

    worker_id: str
    why: str


def dead_incarnations(pod: PodLife, rows: Iterable[WorkerRow]) -> list[Verdict]:
    """The live (online or draining) worker rows of ``pod`` that are dead for certain.

    ``rows`` may hold any workers (other pods' are ignored). The rules, each
    enough on its own:

    * the pod is gone: every incarnation of it is dead;
    * the pod's name belongs to another pod now (another uid): its rows are dead;
    * one container runs one worker at a time, so every row of the pod but the
      newest is dead (no clock involved);
    * the container does not run now and ended at F: rows registered before F
      are dead;
    * the container runs since S: rows registered well before S are dead.
    """
    ours = sorted((r for r in rows if pod.ran(r.id)), key=lambda r: r.started_at)
    verdicts: list[Verdict] = []
    for row in rows:
        if row.state in LIVE_STATES and pod.replaced(row):
            verdicts.append(Verdict(row.id, f"pod {pod.name} was replaced by another pod"))
    for index, row in enumerate(ours):
        if row.state not in LIVE_STATES:
            continue
        why = _why_dead(pod, row, newest=index == len(ours) - 1)
        if why is not None:
            verdicts.append(Verdict(row.id, why))
    return verdicts


def _why_dead(pod: PodLife, row: WorkerRow, *, newest: bool) -> str | None:
    if pod.gone:
        return f"pod {pod.name} is gone"
    if not newest:
        return f"a newer worker started in pod {pod.name}"
    container = pod.container
    if container is None:
        return None
    if container.running_since is None:
        ended = container.last_ended
        resolution = timedelta(seconds=TIMESTAMP_RESOLUTION_SECONDS)
        if ended is not None and row.started_at < ended + resolution:
            return f"its container in pod {pod.name} ended at {ended.isoformat()}"
        return None
    margin = timedelta(seconds=CLOCK_MARGIN_SECONDS)
    if row.started_at < container.running_since - margin:
        return (
            f"its container in pod {pod.name} restarted at {container.running_since.isoformat()} "
            f"(restart {container.restart_count})"
        )
    return None


def runs_now(pod: PodLife, worker_id: str, rows: Iterable[WorkerRow]) -> bool:
    """Whether ``worker_id`` is the incarnation ``pod`` runs now.

    Its container must be running, the worker must be the pod's newest and must
    have registered after the container's current start (give or take the clock
    margin): an incarnation from before a restart is a dead one, not a hung one.
    """
    container = pod.container
    if pod.gone or container is None or container.running_since is None:
        return False
    if not pod.ran(worker_id):
        return False
    ours = sorted((r for r in rows if pod.ran(r.id)), key=lambda r: r.started_at)
    if not ours or ours[-1].id != worker_id:
        return False
    margin = timedelta(seconds=CLOCK_MARGIN_SECONDS)
    return ours[-1].started_at >= container.running_since - margin


def hung_pods(
    reaped: Iterable[str], pods: Iterable[PodLife], rows: Sequence[WorkerRow]
) -> list[PodLife]:
    """The pods whose current incarnation is among the ``reaped`` (silent) workers."""
    chosen = []
    for pod in pods:
        if any(runs_now(pod, worker_id, rows) for worker_id in reaped):
            chosen.append(pod)
    return sorted(chosen, key=lambda p: p.name)


# -- effects ------------------------------------------------------------------------------------


@dataclass
class Released:
    """What the operator remembers: incarnations already released, and pods already seen.

    Remembering a pod's signature keeps the watch's repeated events (probe
    flips, readiness) from asking the database again about the same death;
    remembering released ids keeps a wrong verdict (clocks far apart) from
    releasing a living worker's jobs more than once.
    """

    workers: dict[str, None] = field(default_factory=dict)
    signatures: dict[str, tuple[object, ...]] = field(default_factory=dict)

    def fresh(self, verdicts: Iterable[Verdict]) -> list[Verdict]:
        return [v for v in verdicts if v.worker_id not in self.workers]

    def remember(self, worker_ids: Iterable[str]) -> None:
        for worker_id in worker_ids:
            self.workers[worker_id] = None
        while len(self.workers) > REMEMBERED_RELEASES:
            del self.workers[next(iter(self.workers))]

    def seen(self, pod: PodLife) -> bool:
        return self.signatures.get(pod.uid) == pod.signature

    def saw(self, pod: PodLife) -> None:
        if pod.gone:
            self.signatures.pop(pod.uid, None)
        else:
            self.signatures[pod.uid] = pod.signature


@dataclass(frozen=True)
class Outcome:
    workers: tuple[str, ...]
    jobs_released: int
    jobs_dead: int


async def release_dead(
    repository: Repository, pool_key: str, pod: PodLife, released: Released
) -> Outcome:
    """Release the jobs of ``pod``'s dead incarnations (one look at the pool's worker rows)."""
    rows = await repository.list_workers(pool_key)
    verdicts = released.fresh(dead_incarnations(pod, rows))
    if not verdicts:
        return Outcome((), 0, 0)
    result = await repository.release_incarnations([(v.worker_id, v.why) for v in verdicts])
    released.remember(v.worker_id for v in verdicts)
    for verdict in verdicts:
        if verdict.worker_id in result.worker_ids:
            logger.info(
                "worker %s is dead: %s",
                verdict.worker_id,
                verdict.why,
                extra={"pool": pool_key, "pod": pod.name},
            )
    return Outcome(result.worker_ids, result.jobs_released, result.jobs_dead)


async def pool_workers(
    repository: Repository, namespace: str, pools: Iterable[str]
) -> list[WorkerRow]:
    """The worker rows of ``pools`` (names in ``namespace``), whatever their state."""
    rows: list[WorkerRow] = []
    for pool in pools:
        rows += await repository.list_workers(builders.pool_key(namespace, pool))
    return rows


def database_ref(spec: Mapping[str, Any]) -> tuple[str, str] | None:
    """The Secret name and key the pod's worker reads its DSN from (as the builder wrote it)."""
    variable = worker_config.variable_of("dsn")
    for container in spec.get("containers") or []:
        if container.get("name") != WORKER_CONTAINER:
            continue
        for env in container.get("env") or []:
            ref = (env.get("valueFrom") or {}).get("secretKeyRef") or {}
            if env.get("name") == variable and ref.get("name"):
                return str(ref["name"]), str(ref.get("key") or "dsn")
    return None


async def on_pod_event(
    runtime: Runtime,
    namespace: str,
    event_type: str | None,
    meta: Mapping[str, Any],
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
) -> Outcome | None:
    """A worker pod changed: release the jobs of the incarnations its status proves dead.

    None when there was nothing to look at, or the database could not be asked
    (the pod's next event asks again; lease expiry remains the fallback).
    """
    pod = pod_life(meta, status, gone=event_type == "DELETED")
    pool = (meta.get("labels") or {}).get(builders.LABEL_POOL)
    ref = database_ref(spec)
    if not pod.shows_a_death or runtime.released.seen(pod) or pool is None or ref is None:
        return None
    dsn = None
    try:
        dsn = await runtime.secrets.dsn(namespace, *ref)
        repository = await runtime.inspector.repository(dsn)
        outcome = await release_dead(
            repository, builders.pool_key(namespace, pool), pod, runtime.released
        )
    except QueueAccessError as error:
        logger.warning("cannot release the jobs of dead workers in pod %s: %s", pod.name, error)
        return None
    except Exception as error:  # a database error: the pod's next event asks again
        problem = inspector.access_error(error, dsn or "", "releasing dead workers' jobs")
        logger.warning("cannot release the jobs of dead workers in pod %s: %s", pod.name, problem)
        return None
    runtime.released.saw(pod)
    metrics.DEAD_WORKERS_RELEASED.inc(len(outcome.workers))
    metrics.DEAD_WORKER_JOBS.labels(outcome="released").inc(outcome.jobs_released)
    metrics.DEAD_WORKER_JOBS.labels(outcome="dead_lettered").inc(outcome.jobs_dead)
    return outcome

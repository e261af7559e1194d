"""Pod status of the local node agent, built from snapshots of its containers (pure).

Phase and conditions follow the kubelet (pkg/kubelet/kubelet_pods.go getPhase and
pkg/kubelet/status/generate.go); a condition's lastTransitionTime moves only when its
status changes, so rebuilding from unchanged inputs yields an identical status and no
patch is sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

JsonDict = dict[str, Any]

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})
# Conditions the agent owns; any other (PodScheduled excepted) belongs to someone else and
# survives because pod status is patched with a strategic merge keyed by condition type.
OWNED_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady")


@dataclass(frozen=True)
class Waiting:
    reason: str
    message: str = ""


@dataclass(frozen=True)
class Running:
    started_at: datetime


@dataclass(frozen=True)
class Terminated:
    exit_code: int
    reason: str
    finished_at: datetime
    started_at: datetime | None = None
    message: str = ""
    container_id: str = ""
    signal: int | None = None


ContainerState = Waiting | Running | Terminated


@dataclass(frozen=True)
class ContainerSnapshot:
    """What one container looks like right now, as its runner reports it."""

    name: str
    image: str
    state: ContainerState
    restart_count: int = 0
    last_state: Terminated | None = None
    ready: bool = False
    started: bool = False
    container_id: str = ""


@dataclass(frozen=True)
class PodView:
    """The inputs of one status build besides the container snapshots."""

    pod_ip: str
    host_ip: str
    start_time: datetime
    now: datetime
    init_containers: tuple[ContainerSnapshot, ...] = ()
    # Deleted pods end in a terminal phase, as if their policy were Never.
    terminating: bool = False


def format_time(moment: datetime) -> str:
    """metav1.Time: RFC 3339 in UTC, whole seconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def state_json(state: ContainerState) -> JsonDict:
    if isinstance(state, Waiting):
        waiting: JsonDict = {"reason": state.reason}
        if state.message:
            waiting["message"] = state.message
        return {"waiting": waiting}
    if isinstance(state, Running):
        return {"running": {"startedAt": format_time(state.started_at)}}
    terminated: JsonDict = {
        "exitCode": state.exit_code,
        "reason": state.reason,
        "finishedAt": format_time(state.finished_at),
    }
    if state.started_at is not None:
        terminated["startedAt"] = format_time(state.started_at)
    if state.message:
        terminated["message"] = state.message
    if state.container_id:
        terminated["containerID"] = state.container_id
    if state.signal is not None:
        terminated["signal"] = state.signal
    return {"terminated": terminated}


def container_status_json(snapshot: ContainerSnapshot) -> JsonDict:
    status: JsonDict = {
        "name": snapshot.name,
        "image": snapshot.image,
        "imageID": "",
        "ready": snapshot.ready,
        "started": snapshot.started,
        "restartCount": snapshot.restart_count,
        "state": state_json(snapshot.state),
        "lastState": state_json(snapshot.last_state) if snapshot.last_state else {},
    }
    if snapshot.container_id:
        status["containerID"] = snapshot.container_id
    return status


def init_done(init_containers: Sequence[ContainerSnapshot]) -> bool:
    return all(isinstance(c.state, Terminated) and c.state.exit_code == 0 for c in init_containers)


def init_failed(init_containers: Sequence[ContainerSnapshot], restart_policy: str) -> bool:
    """An init container failed for good: it exited non-zero and will not be retried."""
    return restart_policy == "Never" and any(
        isinstance(c.state, Terminated) and c.state.exit_code != 0 for c in init_containers
    )


def pod_phase(
    restart_policy: str,
    containers: Sequence[ContainerSnapshot],
    init_containers: Sequence[ContainerSnapshot] = (),
) -> str:
    """The kubelet's getPhase: a container waiting after a previous run counts as stopped."""
    if init_failed(init_containers, restart_policy):
        return "Failed"
    if not init_done(init_containers):
        return "Pending"
    running = waiting = stopped = succeeded = 0
    for container in containers:
        if isinstance(container.state, Running):
            running += 1
        elif isinstance(container.state, Terminated):
            stopped += 1
            succeeded += container.state.exit_code == 0
        elif container.last_state is not None:
            stopped += 1
        else:
            waiting += 1
    if waiting > 0:
        return "Pending"
    if running > 0:
        return "Running"
    if stopped > 0:
        if restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if restart_policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def terminating_phase(containers: Sequence[ContainerSnapshot]) -> str:
    """The terminal phase of a deleted pod once its containers stopped."""
    exit_codes = [c.state.exit_code for c in containers if isinstance(c.state, Terminated)]
    return "Succeeded" if exit_codes and all(code == 0 for code in exit_codes) else "Failed"


def build_conditions(
    pod: Mapping[str, Any],
    containers: Sequence[ContainerSnapshot],
    view: PodView,
    phase: str,
    previous: Sequence[Mapping[str, Any]],
) -> list[JsonDict]:
    """PodReadyToStartContainers, Initialized, ContainersReady, Ready and PodScheduled."""
    by_type = {c.get("type"): c for c in previous}
    spec = pod.get("spec") or {}
    terminal = phase in TERMINAL_PHASES
    completed = phase == "Succeeded"

    not_initialized = [
        c.name
        for c in view.init_containers
        if not (isinstance(c.state, Terminated) and c.state.exit_code == 0)
    ]
    unready = [c.name for c in containers if not c.ready]
    gates_missing = [
        gate.get("conditionType", "")
        for gate in spec.get("readinessGates") or []
        if (by_type.get(gate.get("conditionType")) or {}).get("status") != "True"
    ]

    def make(kind: str, ok: bool, reason: str = "", message: str = "") -> JsonDict:
        return _condition(kind, ok, "" if ok else reason, "" if ok else message, by_type, view.now)

    containers_ready = make(
        "ContainersReady",
        not unready and not terminal,
        "PodCompleted" if completed else "ContainersNotReady",
        "" if completed else f"containers with unready status: [{' '.join(unready)}]",
    )
    if completed:
        ready = make("Ready", False, "PodCompleted")
    elif unready or terminal:
        ready = make(
            "Ready",
            False,
            "ContainersNotReady",
            f"containers with unready status: [{' '.join(unready)}]",
        )
    else:
        ready = make(
            "Ready",
            not gates_missing,
            "ReadinessGatesNotReady",
            f'the status of pod readiness gates {gates_missing} is not "True"',
        )
    initialized = make(
        "Initialized",
        not not_initialized,
        "ContainersNotInitialized",
        f"containers with incomplete status: [{' '.join(not_initialized)}]",
    )
    scheduled = dict(
        by_type.get("PodScheduled") or _condition("PodScheduled", True, "", "", {}, view.now)
    )
    return [
        make("PodReadyToStartContainers", not terminal),
        initialized,
        ready,
        containers_ready,
        scheduled,
    ]


def _condition(
    kind: str,
    ok: bool,
    reason: str,
    message: str,
    previous_by_type: Mapping[Any, Mapping[str, Any]],
    now: datetime,
) -> JsonDict:
    status = "True" if ok else "False"
    before = previous_by_type.get(kind)
    transition = (
        before["lastTransitionTime"]
        if before and before.get("status") == status and before.get("lastTransitionTime")
        else format_time(now)
    )
    # Explicit nulls: the status goes out as a strategic merge patch, which would keep a
    # stale reason or message of the previous condition instead of dropping it.
    return {
        "type": kind,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": transition,
        "reason": reason or None,
        "message": message or None,
    }


def build_pod_status(
    pod: Mapping[str, Any],
    containers: Sequence[ContainerSnapshot],
    view: PodView,
    previous_conditions: Sequence[Mapping[str, Any]],
) -> JsonDict:
    """The status fields the agent owns, ready for a strategic-merge patch."""
    spec = pod.get("spec") or {}
    restart_policy = spec.get("restartPolicy") or "Always"
    previous_phase = (pod.get("status") or {}).get("phase")
    if previous_phase in TERMINAL_PHASES:
        phase = previous_phase  # a terminal phase is final: the apiserver refuses to leave it
    elif view.terminating and _all_stopped(containers):
        phase = terminating_phase(containers)
    else:
        phase = pod_phase(restart_policy, containers, view.init_containers)
    status: JsonDict = {
        "phase": phase,
        "conditions": build_conditions(pod, containers, view, phase, previous_conditions),
        "hostIP": view.host_ip,
        "hostIPs": [{"ip": view.host_ip}],
        "podIP": view.pod_ip,
        "podIPs": [{"ip": view.pod_ip}],
        "startTime": format_time(view.start_time),
        "containerStatuses": [container_status_json(c) for c in containers],
    }
    if view.init_containers:
        status["initContainerStatuses"] = [container_status_json(c) for c in view.init_containers]
    return status


def _all_stopped(containers: Sequence[ContainerSnapshot]) -> bool:
    return all(not isinstance(c.state, Running) for c in containers)


def status_patch(status: Mapping[str, Any]) -> JsonDict:
    return {"status": dict(status)}


def waiting_message_no_command(container: Mapping[str, Any]) -> str:
    return (
        "the local node agent runs containers as processes and needs "
        f"spec.containers[].command; image {container.get('image', '')!r} is not pulled"
    )

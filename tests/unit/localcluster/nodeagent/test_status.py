"""Pod status as the local node agent publishes it: phase, conditions, container statuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from localcluster.nodeagent.status import (
    ContainerSnapshot,
    PodView,
    Running,
    Terminated,
    Waiting,
    build_pod_status,
    container_status_json,
    format_time,
    pod_phase,
)

T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
T1 = T0 + timedelta(seconds=30)


def pod(restart_policy: str = "Always", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1"},
        "spec": {"restartPolicy": restart_policy, "containers": [{"name": "main"}], **spec},
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "True",
                    "lastTransitionTime": "2025-01-01T00:00:00Z",
                }
            ],
        },
    }


def running(name: str = "main", *, ready: bool = True, restarts: int = 0) -> ContainerSnapshot:
    return ContainerSnapshot(
        name=name,
        image="img",
        state=Running(T0),
        ready=ready,
        started=True,
        restart_count=restarts,
        container_id="local://42",
    )


def exited(code: int, name: str = "main") -> ContainerSnapshot:
    return ContainerSnapshot(
        name=name,
        image="img",
        state=Terminated(
            exit_code=code, reason="Error" if code else "Completed", finished_at=T0, started_at=T0
        ),
    )


def waiting(reason: str = "ContainerCreating", *, crashed: bool = False) -> ContainerSnapshot:
    last = Terminated(exit_code=1, reason="Error", finished_at=T0) if crashed else None
    return ContainerSnapshot(name="main", image="img", state=Waiting(reason), last_state=last)


def view(now: datetime = T0, **fields: Any) -> PodView:
    return PodView(pod_ip="127.0.0.2", host_ip="127.0.0.1", start_time=T0, now=now, **fields)


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


@pytest.mark.parametrize(
    ("policy", "containers", "phase"),
    [
        ("Always", [waiting()], "Pending"),
        ("Always", [waiting("NoCommand")], "Pending"),
        ("Always", [running()], "Running"),
        ("Always", [running(), waiting()], "Pending"),
        ("Always", [waiting("CrashLoopBackOff", crashed=True)], "Running"),
        ("Always", [exited(0)], "Running"),
        ("OnFailure", [exited(0)], "Succeeded"),
        ("OnFailure", [exited(1)], "Running"),
        ("Never", [exited(0)], "Succeeded"),
        ("Never", [exited(1)], "Failed"),
        ("Never", [exited(0), running("side")], "Running"),
    ],
)
def test_phase(policy: str, containers: list[ContainerSnapshot], phase: str) -> None:
    assert pod_phase(policy, containers) == phase


def test_init_containers_gate_the_phase() -> None:
    init_running = ContainerSnapshot(name="init", image="i", state=Running(T0))
    init_failed = ContainerSnapshot(
        name="init", image="i", state=Terminated(exit_code=1, reason="Error", finished_at=T0)
    )
    assert pod_phase("Always", [waiting("PodInitializing")], [init_running]) == "Pending"
    assert pod_phase("Never", [waiting("PodInitializing")], [init_failed]) == "Failed"
    assert pod_phase("OnFailure", [waiting("PodInitializing")], [init_failed]) == "Pending"
    assert pod_phase("Always", [running()], [exited(0, "init")]) == "Running"


def test_ready_pod_status() -> None:
    status = build_pod_status(pod(), [running()], view(), pod()["status"]["conditions"])
    assert status["phase"] == "Running"
    assert status["podIP"] == "127.0.0.2"
    assert status["podIPs"] == [{"ip": "127.0.0.2"}]
    assert status["hostIP"] == "127.0.0.1"
    assert status["startTime"] == "2025-01-02T03:04:05Z"
    by_type = conditions(status)
    assert {k: v["status"] for k, v in by_type.items()} == {
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "Ready": "True",
        "ContainersReady": "True",
        "PodScheduled": "True",
    }
    # The scheduler's condition is carried over untouched.
    assert by_type["PodScheduled"]["lastTransitionTime"] == "2025-01-01T00:00:00Z"
    assert "initContainerStatuses" not in status


def test_unready_container_is_named_in_the_conditions() -> None:
    status = build_pod_status(pod(), [running(ready=False)], view(), [])
    by_type = conditions(status)
    assert by_type["Ready"]["status"] == "False"
    assert by_type["Ready"]["reason"] == "ContainersNotReady"
    assert by_type["ContainersReady"]["message"] == "containers with unready status: [main]"


def test_transition_time_moves_only_on_change() -> None:
    first = build_pod_status(pod(), [running(ready=False)], view(T0), [])
    same = build_pod_status(pod(), [running(ready=False)], view(T1), first["conditions"])
    assert same == first  # nothing changed: nothing to patch
    flipped = build_pod_status(pod(), [running(ready=True)], view(T1), first["conditions"])
    by_type = conditions(flipped)
    assert by_type["Ready"]["lastTransitionTime"] == format_time(T1)
    assert by_type["Initialized"]["lastTransitionTime"] == format_time(T0)
    # Explicit nulls clear the old reason and message under a strategic merge patch.
    assert by_type["Ready"]["reason"] is None
    assert by_type["Ready"]["message"] is None


def test_readiness_gates_hold_ready_back() -> None:
    gated = pod(readinessGates=[{"conditionType": "example.com/lb"}])
    status = build_pod_status(gated, [running()], view(), [])
    assert conditions(status)["ContainersReady"]["status"] == "True"
    assert conditions(status)["Ready"]["status"] == "False"
    assert conditions(status)["Ready"]["reason"] == "ReadinessGatesNotReady"
    opened = [{"type": "example.com/lb", "status": "True"}]
    assert (
        conditions(build_pod_status(gated, [running()], view(), opened))["Ready"]["status"]
        == "True"
    )


def test_succeeded_pod_reports_pod_completed() -> None:
    status = build_pod_status(pod("Never"), [exited(0)], view(), [])
    assert status["phase"] == "Succeeded"
    assert conditions(status)["Ready"]["reason"] == "PodCompleted"
    assert conditions(status)["PodReadyToStartContainers"]["status"] == "False"


def test_terminal_phase_is_never_left() -> None:
    failed = pod("Always")
    failed["status"]["phase"] = "Failed"
    assert build_pod_status(failed, [running()], view(), [])["phase"] == "Failed"


def test_deleted_pod_ends_succeeded_or_failed_by_exit_codes() -> None:
    terminating = view(terminating=True)
    assert build_pod_status(pod(), [exited(0)], terminating, [])["phase"] == "Succeeded"
    assert build_pod_status(pod(), [exited(143)], terminating, [])["phase"] == "Failed"
    # Still stopping: the phase follows the containers as usual.
    assert build_pod_status(pod(), [running()], terminating, [])["phase"] == "Running"


def test_container_status_json_shapes() -> None:
    crashed = ContainerSnapshot(
        name="main",
        image="img",
        state=Waiting("CrashLoopBackOff", "back-off 2s restarting failed container=main"),
        last_state=Terminated(
            exit_code=143,
            reason="Error",
            finished_at=T1,
            started_at=T0,
            container_id="local://42",
            signal=15,
        ),
        restart_count=2,
        container_id="local://42",
    )
    assert container_status_json(crashed) == {
        "name": "main",
        "image": "img",
        "imageID": "",
        "containerID": "local://42",
        "ready": False,
        "started": False,
        "restartCount": 2,
        "state": {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": "back-off 2s restarting failed container=main",
            }
        },
        "lastState": {
            "terminated": {
                "exitCode": 143,
                "reason": "Error",
                "signal": 15,
                "startedAt": "2025-01-02T03:04:05Z",
                "finishedAt": "2025-01-02T03:04:35Z",
                "containerID": "local://42",
            }
        },
    }
    fresh = container_status_json(running())
    assert fresh["state"] == {"running": {"startedAt": "2025-01-02T03:04:05Z"}}
    assert fresh["lastState"] == {}


def test_init_container_statuses_are_reported() -> None:
    init = ContainerSnapshot(name="migrate", image="i", state=Running(T0))
    status = build_pod_status(
        pod(initContainers=[{"name": "migrate"}]),
        [waiting("PodInitializing")],
        view(init_containers=(init,)),
        [],
    )
    assert status["phase"] == "Pending"
    assert [s["name"] for s in status["initContainerStatuses"]] == ["migrate"]
    assert conditions(status)["Initialized"]["status"] == "False"
    assert (
        conditions(status)["Initialized"]["message"]
        == "containers with incomplete status: [migrate]"
    )

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from workerfleet.operator import reasons, rollup
from workerfleet.operator.rollup import Observation, QueueProblem, QueueReading
from workerfleet.operator.views import DeploymentView, PodView
from workerfleet.worker.models import QueueStats, WorkerStats

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
DEPLOYMENT = DeploymentView(
    name="emails",
    uid="u",
    generation=1,
    spec_hash="h",
    replicas=2,
    ready_replicas=2,
    updated_replicas=2,
    observed_generation=1,
)
STATS = QueueStats(
    queue="emails",
    pending=12,
    scheduled=3,
    running=4,
    succeeded=100,
    dead=2,
    cancelled=0,
    oldest_pending_seconds=125.7,
    finished_last_minute=40,
)
WORKERS = WorkerStats(pool="mail/emails", online=2, busy=1, idle=1, draining=0, dead=1)


def pod(name: str, ready: bool = True, restarts: int = 0, age: float = 600.0, **kw: Any) -> PodView:
    return PodView(
        name=name,
        ready=ready,
        restarts=restarts,
        created_at=NOW - timedelta(seconds=age),
        deleting=kw.get("deleting", False),
        phase=kw.get("phase", "Running"),
    )


def observe(**overrides: Any) -> Observation:
    base = Observation(
        name="emails",
        generation=4,
        paused=False,
        spec_problem=None,
        desired=2,
        deployment=DEPLOYMENT,
        pods=[pod("emails-a"), pod("emails-b")],
        queue=QueueReading(STATS, WORKERS),
        short_since=None,
        previous={},
        now=NOW,
    )
    return replace(base, **overrides)


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    listed: list[dict[str, Any]] = status["conditions"]
    (found,) = [c for c in listed if c["type"] == kind]
    return found


def test_healthy_pool_status() -> None:
    result = rollup.rollup(observe())
    status = result.status
    assert status["observedGeneration"] == 4
    assert (status["replicas"], status["readyReplicas"], status["desiredReplicas"]) == (2, 2, 2)
    assert status["health"] == "Healthy"
    assert (
        status["selector"]
        == "app.kubernetes.io/name=workerfleet-worker,workerfleet.dev/pool=emails"
    )
    assert status["queue"] == {
        "pending": 12,
        "scheduled": 3,
        "running": 4,
        "succeeded": 100,
        "dead": 2,
        "cancelled": 0,
        "oldestPendingSeconds": 125,
        "oldestPending": "2m5s",
        "throughputPerMinute": 40,
    }
    assert status["workers"] == {"online": 2, "busy": 1, "idle": 1, "draining": 0, "dead": 1}
    assert condition(status, "Available")["status"] == "True"
    assert condition(status, "Degraded")["reason"] == reasons.AS_EXPECTED
    assert condition(status, "QueueReachable")["status"] == "True"
    assert condition(status, "Paused")["status"] == "False"
    assert result.changed
    assert result.events == []


def test_nothing_changes_when_nothing_changed() -> None:
    first = rollup.rollup(observe())
    second = rollup.rollup(observe(previous=first.status, now=NOW + timedelta(seconds=30)))
    assert not second.changed
    assert second.status == first.status
    assert second.events == []


def test_killed_worker_degrades_with_a_warning_event() -> None:
    healthy = rollup.rollup(observe()).status
    crashed = [pod("emails-a"), pod("emails-b", ready=False, restarts=1, phase="Running")]
    result = rollup.rollup(observe(pods=crashed, previous=healthy, now=NOW + timedelta(seconds=5)))
    degraded = condition(result.status, "Degraded")
    assert degraded["status"] == "True"
    assert degraded["reason"] == reasons.WORKERS_NOT_READY
    assert "emails-b" in degraded["message"]
    assert degraded["lastTransitionTime"] == "2026-01-01T12:00:05Z"
    assert condition(result.status, "Available")["status"] == "True"
    assert result.status["readyReplicas"] == 1
    assert result.status["health"] == "Degraded"
    assert [(e.type, e.reason) for e in result.events] == [("Warning", reasons.EVENT_DEGRADED)]
    recovered = rollup.rollup(observe(previous=result.status, now=NOW + timedelta(seconds=20)))
    assert condition(recovered.status, "Degraded")["status"] == "False"
    assert [(e.type, e.reason) for e in recovered.events] == [("Normal", reasons.EVENT_RECOVERED)]


def test_all_workers_down_is_unavailable() -> None:
    healthy = rollup.rollup(observe()).status
    down = [pod("emails-a", ready=False, restarts=2), pod("emails-b", ready=False, restarts=1)]
    result = rollup.rollup(observe(pods=down, previous=healthy))
    assert condition(result.status, "Available")["status"] == "False"
    assert result.status["health"] == "Unavailable"
    assert ("Warning", reasons.EVENT_UNAVAILABLE) in [(e.type, e.reason) for e in result.events]


def test_new_pods_are_starting_not_degraded() -> None:
    young = [pod("emails-a", ready=False, age=5), pod("emails-b", ready=False, age=5)]
    result = rollup.rollup(observe(pods=young, short_since=NOW))
    assert condition(result.status, "Degraded")["status"] == "False"
    assert condition(result.status, "Degraded")["reason"] == reasons.WORKERS_STARTING
    assert result.status["health"] == "Starting"
    assert result.events == []


def test_missing_workers_degrade_after_the_startup_grace() -> None:
    since = NOW - timedelta(seconds=rollup.STARTUP_GRACE_SECONDS + 1)
    result = rollup.rollup(observe(pods=[pod("emails-a")], short_since=since))
    degraded = condition(result.status, "Degraded")
    assert degraded["status"] == "True"
    assert degraded["message"].startswith("1 of 2 workers ready for")


def test_short_since_clock() -> None:
    assert rollup.next_short_since(None, 1, 2, NOW) == NOW
    earlier = NOW - timedelta(seconds=9)
    assert rollup.next_short_since(earlier, 1, 2, NOW) == earlier
    assert rollup.next_short_since(earlier, 2, 2, NOW) is None


def test_terminating_pods_do_not_count() -> None:
    pods = [pod("a"), pod("b"), pod("old", ready=False, deleting=True)]
    status = rollup.rollup(observe(pods=pods)).status
    assert status["replicas"] == 2


def test_unreachable_queue_keeps_last_stats_and_recovers_with_events() -> None:
    healthy = rollup.rollup(observe()).status
    problem = QueueProblem(reasons.SECRET_NOT_FOUND, "Secret mail/queue-db not found")
    broken = rollup.rollup(observe(queue=problem, previous=healthy))
    reachable = condition(broken.status, "QueueReachable")
    assert (reachable["status"], reachable["reason"]) == ("False", reasons.SECRET_NOT_FOUND)
    assert reachable["message"] == "Secret mail/queue-db not found"
    assert broken.status["health"] == "QueueUnreachable"
    assert broken.status["queue"] == healthy["queue"]  # the last good figures stay
    kinds = [(e.type, e.reason) for e in broken.events]
    assert kinds == [("Warning", reasons.EVENT_QUEUE_UNREACHABLE)]
    fixed = rollup.rollup(observe(previous={**healthy, **broken.status}))
    assert condition(fixed.status, "QueueReachable")["status"] == "True"
    assert [(e.type, e.reason) for e in fixed.events] == [("Normal", reasons.EVENT_QUEUE_REACHABLE)]


def test_queue_unreachable_from_the_start_is_reported() -> None:
    problem = QueueProblem(reasons.DATABASE_UNREACHABLE, "connection refused")
    result = rollup.rollup(observe(queue=problem))
    assert ("Warning", reasons.EVENT_QUEUE_UNREACHABLE) in [
        (e.type, e.reason) for e in result.events
    ]


def test_invalid_spec_names_the_field() -> None:
    problem = (
        "spec.worker.leaseDuration (2s) must be longer than spec.worker.heartbeatInterval (5s)"
    )
    result = rollup.rollup(observe(spec_problem=problem, queue=None, deployment=None, pods=[]))
    degraded = condition(result.status, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", reasons.INVALID_SPEC)
    assert "spec.worker.leaseDuration" in degraded["message"]
    assert condition(result.status, "QueueReachable")["status"] == "Unknown"
    assert result.status["health"] == "InvalidSpec"


def test_paused_pool_reports_paused() -> None:
    result = rollup.rollup(observe(paused=True, previous=rollup.rollup(observe()).status))
    assert condition(result.status, "Paused")["status"] == "True"
    assert result.status["health"] == "Paused"
    assert [(e.type, e.reason) for e in result.events] == [("Normal", reasons.EVENT_PAUSED)]


def test_deleted_deployment_is_degraded() -> None:
    result = rollup.rollup(observe(deployment=None))
    assert condition(result.status, "Degraded")["reason"] == reasons.DEPLOYMENT_MISSING


def test_scaled_to_zero() -> None:
    result = rollup.rollup(observe(desired=0, pods=[]))
    assert condition(result.status, "Available")["reason"] == reasons.SCALED_TO_ZERO
    assert result.status["health"] == "ScaledToZero"


def test_scale_time_moves_when_desired_changes() -> None:
    first = rollup.rollup(observe()).status
    assert "lastScaleTime" not in first
    later = NOW + timedelta(minutes=1)
    scaled = rollup.rollup(observe(desired=3, previous=first, now=later)).status
    assert scaled["lastScaleTime"] == "2026-01-01T12:01:00Z"


def test_empty_queue_shows_no_oldest() -> None:
    status = rollup.rollup(observe(queue=QueueReading(None, None))).status
    assert status["queue"]["pending"] == 0
    assert status["queue"]["oldestPending"] == rollup.NO_PENDING
    assert status["workers"]["online"] == 0


def test_status_patch_removes_what_is_gone() -> None:
    previous = {
        "health": "Healthy",
        "deployment": "emails",
        "queue": {"pending": 3, "oldestPendingSeconds": 9, "oldestPending": "9s"},
        "unmanaged": "kept",
    }
    status = {"health": "Healthy", "queue": {"pending": 0, "oldestPending": "-"}}
    assert rollup.status_patch(previous, status) == {
        "deployment": None,
        "queue": {"pending": 0, "oldestPending": "-", "oldestPendingSeconds": None},
    }
    assert rollup.status_patch(status, status) == {}


def test_a_written_patch_applied_to_what_the_watch_showed_is_what_the_server_stores() -> None:
    shown = {
        "health": "Healthy",
        "deployment": "emails",
        "queue": {"pending": 3, "oldestPendingSeconds": 9, "oldestPending": "9s"},
        "unmanaged": "kept",
    }
    status = {"health": "Degraded", "queue": {"pending": 0, "oldestPending": "-"}}
    patch = rollup.status_patch(shown, status)
    assert rollup.apply_merge_patch(shown, patch) == {**status, "unmanaged": "kept"}
    assert rollup.apply_merge_patch(shown, {}) == shown
    assert rollup.apply_merge_patch({}, {"queue": {"pending": 1, "dead": None}}) == {
        "queue": {"pending": 1}
    }


def test_missing_queue_schema_is_unknown_not_a_warning() -> None:
    problem = QueueProblem(reasons.QUEUE_SCHEMA_MISSING, "no schema yet", "Unknown")
    young = [pod("emails-a", ready=False, age=2), pod("emails-b", ready=False, age=2)]
    result = rollup.rollup(observe(queue=problem, pods=young, short_since=NOW))
    assert condition(result.status, "QueueReachable")["status"] == "Unknown"
    assert condition(result.status, "Degraded")["status"] == "False"
    assert result.status["health"] == "Starting"
    assert result.events == []

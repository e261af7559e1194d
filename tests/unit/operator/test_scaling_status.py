"""The status of scaling: ScalingActive, ScalingLimited and the scaling block."""

from __future__ import annotations

from workerfleet.operator import reasons, scaling_status
from workerfleet.operator.scaling import Decision, History
from workerfleet.operator.scaling_status import ScalingReport


def decision(
    reason: str = reasons.SCALE_QUEUE_DEPTH, limit: str | None = None, active: bool = True
) -> Decision:
    return Decision(
        4,
        reason,
        "2 -> 4: 35 ready pending + 0 running at 10 per worker",
        4,
        limit,
        active,
        History(),
    )


def conditions(report: ScalingReport) -> dict[str, tuple[str, str]]:
    return {u.type: (u.status, u.reason) for u in scaling_status.condition_updates(report)}


def test_following_the_queue() -> None:
    report = ScalingReport(decision())
    assert conditions(report) == {
        reasons.SCALING_ACTIVE: ("True", reasons.QUEUE_READ),
        reasons.SCALING_LIMITED: ("False", reasons.DESIRED_WITHIN_RANGE),
    }
    assert scaling_status.status_block(report) == {
        "reason": reasons.SCALE_QUEUE_DEPTH,
        "message": "2 -> 4: 35 ready pending + 0 running at 10 per worker",
        "recommendedReplicas": 4,
    }


def test_an_unreadable_queue_makes_scaling_inactive() -> None:
    report = ScalingReport(decision(reasons.SCALE_FALLBACK, active=False))
    assert conditions(report)[reasons.SCALING_ACTIVE] == ("False", reasons.QUEUE_UNREADABLE)


def test_an_override_makes_scaling_inactive() -> None:
    report = ScalingReport(decision(reasons.REPLICAS_OVERRIDE, active=False))
    assert conditions(report)[reasons.SCALING_ACTIVE] == ("False", reasons.OVERRIDDEN)


def test_bounds_steps_busy_workers_and_held_scale_ins_limit() -> None:
    for limit in (reasons.LIMIT_TOO_MANY, reasons.LIMIT_SCALE_UP, reasons.LIMIT_BUSY_WORKERS):
        limited = conditions(ScalingReport(decision(limit=limit)))[reasons.SCALING_LIMITED]
        assert limited == ("True", limit)
    held = ScalingReport(decision(), held="the ReplicaSet would delete pod x next")
    assert conditions(held)[reasons.SCALING_LIMITED] == ("True", reasons.LIMIT_SCALE_IN)
    block = scaling_status.status_block(held)
    assert block is not None
    assert block["reason"] == reasons.SCALE_IN_HELD
    assert block["message"].endswith("; the ReplicaSet would delete pod x next")


def test_paused_invalid_and_the_concurrency_warning() -> None:
    assert conditions(ScalingReport(None, paused=True))[reasons.SCALING_ACTIVE][0] == "False"
    assert conditions(ScalingReport(None, invalid=True))[reasons.SCALING_ACTIVE] == (
        "False",
        reasons.INVALID_SPEC,
    )
    assert scaling_status.status_block(ScalingReport(None, paused=True)) is None
    warned = ScalingReport(decision(), warning="jobsPerWorker below concurrency")
    assert conditions(warned)[reasons.SCALING_ACTIVE] == (
        "True",
        reasons.JOBS_PER_WORKER_BELOW_CONCURRENCY,
    )

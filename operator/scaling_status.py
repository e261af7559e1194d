"""What a pool's status says about scaling: the ScalingActive and ScalingLimited conditions
(in the HPA's spirit) and the ``scaling`` block with the last decision in words. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workerfleet.operator import conditions, reasons
from workerfleet.operator.scaling import Decision


@dataclass(frozen=True)
class ScalingReport:
    """The last scaling decision of a pool, and what kept the operator from following it."""

    decision: Decision | None
    """None: no decision (the spec is invalid, or the pool is paused)."""
    paused: bool = False
    invalid: bool = False
    warning: str | None = None
    """A spec that scales but wastes (jobsPerWorker below worker.concurrency)."""
    held: str | None = None
    """Why a scale-in keeps more workers than decided, for now."""


def _active(report: ScalingReport) -> conditions.ConditionUpdate:
    def update(
        status: conditions.ConditionStatus, reason: str, message: str
    ) -> conditions.ConditionUpdate:
        return conditions.ConditionUpdate(reasons.SCALING_ACTIVE, status, reason, message)

    decision = report.decision
    if report.invalid:
        return update("False", reasons.INVALID_SPEC, "the spec is not valid: see Degraded")
    if report.paused:
        return update("False", reasons.NOT_SCALING, "spec.paused is true: replicas are left alone")
    if decision is None:
        return update("Unknown", reasons.NOT_CHECKED, "no scaling decision yet")
    if decision.reason == reasons.REPLICAS_OVERRIDE:
        return update("False", reasons.OVERRIDDEN, decision.message)
    if not decision.active:
        return update("False", reasons.QUEUE_UNREADABLE, decision.message)
    if report.warning is not None:
        return update("True", reasons.JOBS_PER_WORKER_BELOW_CONCURRENCY, report.warning)
    return update("True", reasons.QUEUE_READ, "replicas follow the queue depth")


def _limited(report: ScalingReport) -> conditions.ConditionUpdate:
    decision = report.decision
    if report.held is not None:
        return conditions.ConditionUpdate(
            reasons.SCALING_LIMITED, "True", reasons.LIMIT_SCALE_IN, report.held
        )
    if decision is not None and decision.limit is not None:
        return conditions.ConditionUpdate(
            reasons.SCALING_LIMITED, "True", decision.limit, decision.message
        )
    return conditions.ConditionUpdate(
        reasons.SCALING_LIMITED,
        "False",
        reasons.DESIRED_WITHIN_RANGE,
        "the queue's recommendation is within min, max, step and busy workers",
    )


def condition_updates(report: ScalingReport) -> list[conditions.ConditionUpdate]:
    return [_active(report), _limited(report)]


def status_block(report: ScalingReport) -> dict[str, Any] | None:
    """The ``scaling`` block of the status; None when no decision was made."""
    decision = report.decision
    if decision is None or report.paused or report.invalid:
        return None
    message = decision.message if report.held is None else f"{decision.message}; {report.held}"
    return {
        "reason": reasons.SCALE_IN_HELD if report.held is not None else decision.reason,
        "message": message,
        "recommendedReplicas": decision.recommended,
    }

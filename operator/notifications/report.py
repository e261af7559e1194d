"""status.delivery and the NotificationsDelivered condition, from the outbox's record; pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from workerfleet.operator import conditions, models, reasons
from workerfleet.operator.conditions import ConditionUpdate
from workerfleet.operator.notifications.outbox import DeliveryRecord
from workerfleet.operator.notifications.target import WebhookConfigError


def delivery_status(
    previous: Mapping[str, Any] | None, record: DeliveryRecord, pending: int
) -> dict[str, Any]:
    """The totals so far plus ``record``'s counts; the latest times and failure."""
    before = models.DeliveryStatus.model_validate(dict(previous or {}))
    after = models.DeliveryStatus(
        pending=pending,
        delivered=before.delivered + record.delivered,
        failed=before.failed + record.failed,
        last_success_time=(
            conditions.rfc3339(record.last_success_at)
            if record.last_success_at
            else before.last_success_time
        ),
        last_failure_time=(
            conditions.rfc3339(record.last_failure_at)
            if record.last_failure_at
            else before.last_failure_time
        ),
        last_failure=record.last_failure or before.last_failure,
    )
    return after.model_dump(by_alias=True, exclude_none=True)


def delivery_condition(
    webhook: models.Webhook | None,
    problem: WebhookConfigError | None,
    delivery: Mapping[str, Any],
) -> ConditionUpdate:
    """Whether notifications reach the webhook; a failure says why, never the URL."""
    kind = reasons.NOTIFICATIONS_DELIVERED
    if webhook is None:
        return ConditionUpdate(
            kind, "True", reasons.NO_WEBHOOK, "no webhook configured (spec.alerts.webhook)"
        )
    if problem is not None:
        return ConditionUpdate(kind, "False", problem.reason, problem.message)
    status = models.DeliveryStatus.model_validate(dict(delivery))
    failed_last = status.last_failure_time is not None and (
        status.last_success_time is None or status.last_failure_time > status.last_success_time
    )
    if failed_last:
        return ConditionUpdate(
            kind,
            "False",
            reasons.DELIVERY_FAILED,
            f"{status.last_failure}; {status.pending} pending, {status.failed} given up so far",
        )
    if status.last_success_time is None:
        return ConditionUpdate(
            kind, "True", reasons.WEBHOOK_READY, f"{webhook.format} webhook ready, nothing sent yet"
        )
    return ConditionUpdate(
        kind,
        "True",
        reasons.DELIVERED,
        f"last notification delivered at {status.last_success_time}; {status.pending} pending",
    )

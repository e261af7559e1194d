"""Status conditions per the Kubernetes API conventions, as pure functions.

A condition's ``lastTransitionTime`` moves only when its status changes; a new
reason or message alone keeps the time. Nothing here reads a clock: callers
pass ``now``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

ConditionStatus = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class ConditionUpdate:
    """What a condition should say now."""

    type: str
    status: ConditionStatus
    reason: str
    message: str


@dataclass(frozen=True)
class Transition:
    """A condition whose status changed (``before`` is None the first time it is set)."""

    type: str
    before: ConditionStatus | None
    after: ConditionStatus
    reason: str
    message: str


def rfc3339(moment: datetime) -> str:
    """Second-precision UTC, as Kubernetes writes timestamps."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_of(flag: bool) -> ConditionStatus:
    return "True" if flag else "False"


def by_type(conditions: Iterable[Mapping[str, Any]] | None) -> dict[str, Mapping[str, Any]]:
    return {str(c.get("type")): c for c in conditions or () if c.get("type")}


def merge_conditions(
    previous: Sequence[Mapping[str, Any]] | None,
    updates: Sequence[ConditionUpdate],
    *,
    generation: int | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """The conditions after ``updates``, in their order; others are kept as they were."""
    old = by_type(previous)
    merged: list[dict[str, Any]] = []
    for update in updates:
        before = old.get(update.type)
        unchanged = before is not None and before.get("status") == update.status
        since = before.get("lastTransitionTime") if unchanged and before else None
        condition: dict[str, Any] = {
            "type": update.type,
            "status": update.status,
            "reason": update.reason,
            "message": update.message,
            "lastTransitionTime": since or rfc3339(now),
        }
        if generation is not None:
            condition["observedGeneration"] = generation
        merged.append(condition)
    updated = {u.type for u in updates}
    merged.extend(dict(c) for t, c in old.items() if t not in updated)
    return merged


def transitions(
    previous: Sequence[Mapping[str, Any]] | None, current: Sequence[Mapping[str, Any]]
) -> list[Transition]:
    """Conditions whose status differs from before (including ones seen for the first time)."""
    old = by_type(previous)
    changes = []
    for condition in current:
        before = old.get(condition["type"])
        before_status = before.get("status") if before is not None else None
        if before_status != condition["status"]:
            changes.append(
                Transition(
                    type=condition["type"],
                    before=before_status,
                    after=condition["status"],
                    reason=condition["reason"],
                    message=condition["message"],
                )
            )
    return changes

"""Spec problems the CRD schema cannot express, found before anything is applied.

The API server already refused bounds, enums, patterns and the CEL rules; what
is left needs duration arithmetic (CEL cannot parse our duration grammar).
Every message names the field and says how to fix it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pydantic

from workerfleet.durations import parse_duration
from workerfleet.operator import models


@dataclass(frozen=True)
class Parsed:
    spec: models.WorkerPoolSpec | None
    problem: str | None


def parse_pool(name: str, raw_spec: Mapping[str, Any]) -> Parsed:
    """The spec, or the first problem with it (naming the field)."""
    if not models.POOL_NAME_RULE.check(name):
        return Parsed(None, models.POOL_NAME_RULE.message)
    try:
        spec = models.WorkerPoolSpec.model_validate(dict(raw_spec))
    except pydantic.ValidationError as error:
        return Parsed(None, describe_validation_error(error))
    problems = semantic_problems(spec)
    return Parsed(spec, problems[0] if problems else None)


def describe_validation_error(error: pydantic.ValidationError) -> str:
    messages = []
    for item in error.errors()[:3]:
        messages.append(f"{field_path(item['loc'])}: {item['msg'].removeprefix('Value error, ')}")
    return "; ".join(messages)


def field_path(location: tuple[int | str, ...]) -> str:
    """``("schedules", 0, "cron")`` as the API spells it: ``spec.schedules[0].cron``."""
    path = "spec"
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def semantic_problems(spec: models.WorkerPoolSpec) -> list[str]:
    worker = spec.worker
    problems = []
    for field, seconds in (
        ("pollInterval", parse_duration(worker.poll_interval)),
        ("heartbeatInterval", worker.heartbeat_seconds),
        ("jobTimeout", parse_duration(worker.job_timeout)),
        ("healthLogInterval", parse_duration(worker.health_log_interval)),
    ):
        if seconds <= 0:
            problems.append(f"spec.worker.{field} must be longer than 0")
    if worker.lease_duration is not None and worker.lease_seconds <= worker.heartbeat_seconds:
        problems.append(
            f"spec.worker.leaseDuration ({worker.lease_duration}) must be longer than "
            f"spec.worker.heartbeatInterval ({worker.heartbeat_interval}), or a live worker "
            "loses its jobs between two heartbeats"
        )
    if worker.retry_base_seconds > worker.retry_cap_seconds:
        problems.append(
            f"spec.worker.retryBase ({worker.retry_base}) must not be longer than "
            f"spec.worker.retryCap ({worker.retry_cap})"
        )
    if spec.scaling.poll_interval_seconds <= 0:
        problems.append("spec.scaling.pollInterval must be longer than 0")
    return problems

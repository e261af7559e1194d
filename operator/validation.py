"""A WorkerPool spec as the operator reads it: parsed by the same models the CRD comes from.

Every rule is stated twice in ``models.py``, as CEL the API server runs at
admission and as the Python twin run here, so a spec the API server admitted
parses; parsing again still matters for objects stored before a rule existed
(the API server checks CEL rules on create and on update, not at rest). Every
message names the field and says how to fix it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pydantic

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
    return Parsed(spec, None)


def describe_validation_error(error: pydantic.ValidationError) -> str:
    """The first problems, each at its path as the API server spells it (spec.env[1].name)."""
    messages = []
    for item in error.errors()[:3]:
        where = "spec"
        for part in item["loc"]:
            where += f"[{part}]" if isinstance(part, int) else f".{part}"
        if item["type"] == models.RULE_ERROR:
            where += str((item.get("ctx") or {}).get("field", ""))
        messages.append(f"{where}: {item['msg'].removeprefix('Value error, ')}")
    return "; ".join(messages)

"""The Helm chart's values: every value carries a `# --` description (on itself or on the
object it belongs to), as helm-docs and users expect; values.schema.json mirrors the tree;
the leader election defaults keep a takeover well within 15 seconds."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from workerfleet.operator.lease import Timing

CHART = Path(__file__).resolve().parents[2] / "charts" / "workerfleet"
VALUES = CHART / "values.yaml"
SCHEMA = CHART / "values.schema.json"
# What kopf needs, after taking the Lease, to list the resources and act (measured by the
# e2e test, with a margin for a loaded machine).
KOPF_START_BUDGET_SECONDS = 3.0
TAKEOVER_PROMISE_SECONDS = 15.0


def undocumented_values(text: str) -> list[str]:
    """Dotted paths of leaf values with no `# --` on them or on any parent. A description
    may go on over several comment lines."""
    missing: list[str] = []
    # (indent, key, documented) of the enclosing objects.
    parents: list[tuple[int, str, bool]] = []
    described = False  # the comment lines just above started with `# --`
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            described = stripped.startswith("# --") or (described and stripped != "#")
            continue
        if not stripped or stripped.startswith("-"):
            continue
        indent = len(line) - len(line.lstrip())
        while parents and parents[-1][0] >= indent:
            parents.pop()
        key, _, value = stripped.partition(":")
        documented = described or any(doc for _, _, doc in parents)
        if value.strip():
            if not documented:
                missing.append(".".join([*(k for _, k, _ in parents), key]))
        else:
            parents.append((indent, key, described))
        described = False
    return missing


def test_every_chart_value_is_documented() -> None:
    assert undocumented_values(VALUES.read_text()) == []


def test_the_check_finds_an_undocumented_value() -> None:
    text = (
        "image:\n  # -- documented\n  # over two lines\n  tag: x\n  # plain\n  pullPolicy: Always\n"
    )
    assert undocumented_values(text) == ["image.pullPolicy"]


def schema_gaps(values: Any, schema: Mapping[str, Any], path: str = "") -> list[str]:
    """Values the schema does not describe, and schema properties no value has."""
    if not isinstance(values, Mapping) or "properties" not in schema:
        return []
    properties: Mapping[str, Any] = schema["properties"]
    gaps = [f"{path}{key}: not in the schema" for key in values if key not in properties]
    gaps += [f"{path}{key}: no such value" for key in properties if key not in values]
    for key, value in values.items():
        if key in properties:
            gaps += schema_gaps(value, properties[key], f"{path}{key}.")
    return gaps


def test_the_schema_mirrors_the_values() -> None:
    values = yaml.safe_load(VALUES.read_text())
    schema = json.loads(SCHEMA.read_text())
    assert schema_gaps(values, schema) == []


def test_the_mirror_check_finds_both_directions() -> None:
    schema: dict[str, Any] = {"properties": {"a": {"properties": {"b": {}}}, "gone": {}}}
    assert schema_gaps({"a": {"b": 1, "c": 2}}, schema) == [
        "gone: no such value",
        "a.c: not in the schema",
    ]


def test_default_leader_election_takes_over_well_within_the_promise() -> None:
    election = yaml.safe_load(VALUES.read_text())["leaderElection"]
    timing = Timing(
        election["leaseDurationSeconds"],
        election["renewDeadlineSeconds"],
        election["retryPeriodSeconds"],
    )
    assert timing.problem() is None
    assert timing.worst_takeover_seconds + KOPF_START_BUDGET_SECONDS <= TAKEOVER_PROMISE_SECONDS

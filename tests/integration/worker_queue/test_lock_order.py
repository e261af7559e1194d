"""Statements that lock several job rows take them in one order (ascending id),
and the heartbeat locks its worker row before any job, as reap_dead_workers
does: two statements taking the same rows in different orders deadlock. The
stress test proves the outcome; this guards the plans an edit could change."""

from __future__ import annotations

import json
from typing import Any

import pytest

from workerfleet.worker.connector import Connector
from workerfleet.worker.queries import QUERIES
from workerfleet.worker.repository import Repository

ARGUMENTS: dict[str, list[Any]] = {
    "heartbeat": ["w", [1, 2, 3], [1, 1, 1], 30.0, 3, 0, 0],
    "complete_many": [[1, 2, 3], ["w"] * 3, [1, 1, 1], ["null"] * 3],
    "reap_dead_workers": [60.0, 0.0, 0.0, None],
}


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += _nodes(child)
    return found


async def _plan(connector: Connector, name: str) -> dict[str, Any]:
    # Planned, never run: EXPLAIN without ANALYZE, in a transaction rolled back anyway.
    async with connector.transaction() as connection:
        text = await connection.fetchval("EXPLAIN (FORMAT JSON) " + QUERIES[name], *ARGUMENTS[name])
    document = json.loads(text) if isinstance(text, str) else text
    plan: dict[str, Any] = document[0]["Plan"]
    return plan


@pytest.mark.parametrize("name", sorted(ARGUMENTS))
async def test_job_rows_are_locked_in_ascending_id_order(
    repo: Repository, connector: Connector, name: str
) -> None:
    await repo.register_worker("w", "p", ["q"], None, None)
    nodes = _nodes(await _plan(connector, name))
    locks = [node for node in nodes if node["Node Type"] == "LockRows"]
    assert len(locks) == 1, name
    [below] = [child for child in locks[0]["Plans"] if child["Parent Relationship"] == "Outer"]
    assert below["Node Type"] == "Sort", name
    assert below["Sort Key"][0].endswith(".id"), below["Sort Key"]


async def test_the_heartbeat_locks_its_worker_row_before_any_job(
    repo: Repository, connector: Connector
) -> None:
    nodes = _nodes(await _plan(connector, "heartbeat"))
    # The job scan sits under a one-time filter on the worker update's result,
    # evaluated before the first job row is read.
    [gate] = [node for node in nodes if "One-Time Filter" in node]
    assert any(node.get("Relation Name") == "jobs" for node in _nodes(gate))
    [lock] = [node for node in nodes if node["Node Type"] == "LockRows"]
    [first] = [child for child in lock["Plans"] if child["Parent Relationship"] == "InitPlan"]
    assert any(node.get("CTE Name") == "worker" for node in _nodes(first))

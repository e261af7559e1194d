from __future__ import annotations

from datetime import UTC, datetime

from workerfleet.operator import models, monitor, reasons
from workerfleet.operator.models import MonitorTotals
from workerfleet.operator.monitor import PoolRef

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def selector(**raw: object) -> models.LabelSelector:
    return models.LabelSelector.model_validate(raw)


def test_selector_semantics() -> None:
    labels = {"team": "mail", "tier": "batch"}
    assert monitor.selector_matches(selector(), labels)
    assert monitor.selector_matches(selector(matchLabels={"team": "mail"}), labels)
    assert not monitor.selector_matches(selector(matchLabels={"team": "web"}), labels)
    exprs = [
        ({"key": "tier", "operator": "In", "values": ["batch", "x"]}, True),
        ({"key": "tier", "operator": "NotIn", "values": ["batch"]}, False),
        ({"key": "zone", "operator": "NotIn", "values": ["a"]}, True),
        ({"key": "team", "operator": "Exists"}, True),
        ({"key": "team", "operator": "DoesNotExist"}, False),
    ]
    for expression, expected in exprs:
        assert monitor.selector_matches(selector(matchExpressions=[expression]), labels) is expected


def test_selected_pools_are_sorted_and_filtered() -> None:
    pools = [
        PoolRef("b", {"team": "mail"}, "db", "dsn"),
        PoolRef("a", {"team": "mail"}, "db", "dsn"),
        PoolRef("c", {"team": "web"}, "db", "dsn"),
    ]
    chosen = monitor.selected_pools(selector(matchLabels={"team": "mail"}), pools)
    assert [p.name for p in chosen] == ["a", "b"]


def test_status_accumulates_totals() -> None:
    pools = [PoolRef("a", {}, "db", "dsn")]
    first = monitor.monitor_status(
        {},
        generation=1,
        pools=pools,
        run=MonitorTotals(stuck_jobs_rescued=2, jobs_released=1),
        problems=[],
        now=NOW,
    )
    assert first["pools"] == 1
    assert first["poolNames"] == ["a"]
    assert first["recovered"] == 3
    assert first["lastRun"] == "2026-01-01T00:00:00Z"
    (ready,) = first["conditions"]
    assert (ready["status"], ready["reason"]) == ("True", reasons.RAN)
    second = monitor.monitor_status(
        first,
        generation=1,
        pools=pools,
        run=MonitorTotals(stuck_jobs_rescued=1),
        problems=[],
        now=NOW,
    )
    assert second["totals"]["stuckJobsRescued"] == 3
    assert second["recovered"] == 4


def test_problems_make_the_monitor_not_ready() -> None:
    status = monitor.monitor_status(
        {},
        generation=1,
        pools=[],
        run=MonitorTotals(),
        problems=["pools a: Secret ns/db not found"],
        now=NOW,
    )
    (ready,) = status["conditions"]
    assert (ready["status"], ready["reason"]) == ("False", reasons.RUN_FAILED)


def test_describe_run() -> None:
    assert monitor.describe_run(MonitorTotals()) is None
    text = monitor.describe_run(MonitorTotals(stuck_jobs_rescued=2, pods_restarted=1))
    assert text == "2 jobs rescued from expired leases, 1 hung worker pods deleted"


def test_every_total_has_its_metric_label_and_words() -> None:
    assert set(monitor.TOTAL_WORDS) == set(MonitorTotals.model_fields)
    labels = [label for label, _ in monitor.TOTAL_WORDS.values()]
    assert len(set(labels)) == len(labels)


def test_totals_add_field_by_field() -> None:
    one = MonitorTotals(stuck_jobs_rescued=1, jobs_pruned=4)
    two = MonitorTotals(stuck_jobs_rescued=2, pods_restarted=1, jobs_released=5)
    summed = one.plus(two)
    assert summed == MonitorTotals(
        stuck_jobs_rescued=3, jobs_pruned=4, pods_restarted=1, jobs_released=5
    )
    assert summed.recovered == 8

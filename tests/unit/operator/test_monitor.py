from __future__ import annotations

from datetime import UTC, datetime

from workerfleet.operator import incidents, models, monitor, reasons, recovery, selection
from workerfleet.operator.models import MonitorTotals
from workerfleet.operator.notifications import report
from workerfleet.operator.notifications.outbox import DeliveryRecord
from workerfleet.operator.notifications.target import WebhookConfigError
from workerfleet.operator.runtime import MonitorState
from workerfleet.operator.selection import PoolRef
from workerfleet.worker.models import QueueStats, WorkerStats

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def selector(**raw: object) -> models.LabelSelector:
    return models.LabelSelector.model_validate(raw)


def test_selector_semantics() -> None:
    labels = {"team": "mail", "tier": "batch"}
    assert selection.selector_matches(selector(), labels)
    assert selection.selector_matches(selector(matchLabels={"team": "mail"}), labels)
    assert not selection.selector_matches(selector(matchLabels={"team": "web"}), labels)
    exprs = [
        ({"key": "tier", "operator": "In", "values": ["batch", "x"]}, True),
        ({"key": "tier", "operator": "NotIn", "values": ["batch"]}, False),
        ({"key": "zone", "operator": "NotIn", "values": ["a"]}, True),
        ({"key": "team", "operator": "Exists"}, True),
        ({"key": "team", "operator": "DoesNotExist"}, False),
    ]
    for expression, expected in exprs:
        assert (
            selection.selector_matches(selector(matchExpressions=[expression]), labels) is expected
        )


def test_selected_pools_are_sorted_and_filtered() -> None:
    pools = [
        PoolRef("b", {"team": "mail"}, "db", "dsn"),
        PoolRef("a", {"team": "mail"}, "db", "dsn"),
        PoolRef("c", {"team": "web"}, "db", "dsn"),
    ]
    chosen = selection.selected_pools(selector(matchLabels={"team": "mail"}), pools)
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
    assert recovery.describe_run(MonitorTotals()) is None
    text = recovery.describe_run(MonitorTotals(stuck_jobs_rescued=2, pods_restarted=1))
    assert text == "2 jobs rescued from expired leases, 1 hung worker pods deleted"


def test_every_total_has_its_metric_label_and_words() -> None:
    assert set(recovery.TOTAL_WORDS) == set(MonitorTotals.model_fields)
    labels = [label for label, _ in recovery.TOTAL_WORDS.values()]
    assert len(set(labels)) == len(labels)


def test_totals_add_field_by_field() -> None:
    one = MonitorTotals(stuck_jobs_rescued=1, jobs_pruned=4)
    two = MonitorTotals(stuck_jobs_rescued=2, pods_restarted=1, jobs_released=5)
    summed = one.plus(two)
    assert summed == MonitorTotals(
        stuck_jobs_rescued=3, jobs_pruned=4, pods_restarted=1, jobs_released=5
    )
    assert summed.recovered == 8


def monitor_ref(name: str, **match: str) -> selection.MonitorRef:
    return selection.MonitorRef(name, selector(matchLabels=match))


def test_the_first_monitor_by_name_recovers_a_pool_several_select() -> None:
    mail = PoolRef("mail", {"team": "mail", "tier": "batch"}, "db", "dsn")
    web = PoolRef("web", {"team": "web", "tier": "batch"}, "db", "dsn")
    batch = monitor_ref("b-batch", tier="batch")
    team = monitor_ref("a-mail", team="mail")
    mine, elsewhere = selection.pools_to_recover(batch, [mail, web], [team, batch])
    assert [p.name for p in mine] == ["web"]
    assert elsewhere == {"mail": "a-mail"}
    mine, elsewhere = selection.pools_to_recover(team, [mail], [batch])  # not indexed yet
    assert ([p.name for p in mine], elsewhere) == (["mail"], {})
    assert selection.recovery_owner(web, [team]) is None


def test_pool_refs_read_the_figures_the_rules_need() -> None:
    spec = {
        "image": "i",
        "queue": "emails",
        "database": {"secretRef": {"name": "db"}},
        "replicas": {"min": 0, "max": 5, "override": 2},
        "worker": {"handlers": "acme.jobs", "concurrency": 8},
    }
    ref = PoolRef.from_spec("emails", "uid-1", {"team": "mail"}, spec)
    assert (ref.queue, ref.concurrency, ref.ceiling, ref.uid) == ("emails", 8, 2, "uid-1")
    assert (ref.secret_name, ref.secret_key) == ("db", "dsn")
    assert ref.key("ns") == "ns/emails"
    del spec["replicas"]["override"]  # type: ignore[attr-defined]
    assert PoolRef.from_spec("emails", "u", {}, spec).ceiling == 5
    broken = PoolRef.from_spec("x", "u", {}, {"database": {"secretRef": {"name": "db"}}})
    assert (broken.secret_name, broken.ceiling, broken.concurrency) == ("db", None, None)


def test_status_carries_incidents_firing_and_delivery() -> None:
    rules = models.MonitorRules.model_validate({"noWorkersWithPending": {"for": "0s"}})
    facts = incidents.PoolFacts(
        "a",
        QueueStats("a", 3, 0, 0, 0, 0, 0, 1.0, 0),
        WorkerStats("ns/a", 0, 0, 0, 0, 0),
        concurrency=1,
        ceiling=1,
    )
    evaluation = incidents.evaluate(rules, [facts], ["a"], [], NOW)
    delivery = report.delivery_status(None, DeliveryRecord(delivered=1, last_success_at=NOW), 2)
    condition = report.delivery_condition(None, None, delivery)
    status = monitor.monitor_status(
        {},
        generation=1,
        pools=[PoolRef("a", {}, "db", "dsn")],
        run=MonitorTotals(),
        problems=[],
        now=NOW,
        evaluation=evaluation,
        delivery=delivery,
        notifications=condition,
        elsewhere={"b": "first"},
    )
    assert status["firing"] == 1
    (incident,) = status["incidents"]
    assert (incident["rule"], incident["pool"], incident["state"]) == (
        "noWorkersWithPending",
        "a",
        "firing",
    )
    assert status["delivery"] == {
        "pending": 2,
        "delivered": 1,
        "failed": 0,
        "lastSuccessTime": "2026-01-01T00:00:00Z",
    }
    ready, notifications = status["conditions"]
    assert "recovered by another Monitor (the first by name): b by first" in ready["message"]
    assert (notifications["type"], notifications["reason"]) == (
        reasons.NOTIFICATIONS_DELIVERED,
        reasons.NO_WEBHOOK,
    )


def test_the_last_run_written_here_wins_unless_the_stored_status_is_newer() -> None:
    state = MonitorState(
        incidents=[
            {"rule": "deadJobs", "pool": "a", "state": "firing", "since": "2026-01-01T00:00:00Z"}
        ],
        written_last_run="2026-01-01T00:01:00Z",
    )
    lagging = {"lastRun": "2026-01-01T00:00:30Z", "incidents": []}
    assert [i.rule for i in monitor.previous_incidents(state, lagging)] == ["deadJobs"]
    newer = {
        "lastRun": "2026-01-01T00:02:00Z",
        "incidents": [
            {"rule": "failedJobs", "pool": "a", "state": "firing", "since": "2026-01-01T00:00:00Z"}
        ],
    }
    assert [i.rule for i in monitor.previous_incidents(state, newer)] == ["failedJobs"]
    fresh = MonitorState()  # after a restart: what the status says
    assert [i.rule for i in monitor.previous_incidents(fresh, newer)] == ["failedJobs"]


WEBHOOK = models.Webhook.model_validate({"secretRef": {"name": "hook"}, "format": "slack"})


def test_delivery_condition_says_what_went_wrong_last() -> None:
    ready = report.delivery_condition(
        WEBHOOK, None, report.delivery_status(None, DeliveryRecord(), 0)
    )
    assert (ready.status, ready.reason) == ("True", reasons.WEBHOOK_READY)
    failing = report.delivery_status(
        None,
        DeliveryRecord(failed=1, last_failure_at=NOW, last_failure="HTTP 500 from the webhook"),
        3,
    )
    down = report.delivery_condition(WEBHOOK, None, failing)
    assert (down.status, down.reason) == ("False", reasons.DELIVERY_FAILED)
    assert down.message == "HTTP 500 from the webhook; 3 pending, 1 given up so far"
    later = NOW.replace(minute=5)
    recovered = report.delivery_status(
        failing, DeliveryRecord(delivered=4, last_success_at=later), 0
    )
    assert recovered["failed"] == 1
    assert recovered["lastFailure"] == "HTTP 500 from the webhook"
    ok = report.delivery_condition(WEBHOOK, None, recovered)
    assert (ok.status, ok.reason) == ("True", reasons.DELIVERED)
    problem = WebhookConfigError(reasons.WEBHOOK_SECRET_NOT_FOUND, "Secret ns/hook not found")
    missing = report.delivery_condition(WEBHOOK, problem, recovered)
    assert (missing.status, missing.reason, missing.message) == (
        "False",
        reasons.WEBHOOK_SECRET_NOT_FOUND,
        "Secret ns/hook not found",
    )

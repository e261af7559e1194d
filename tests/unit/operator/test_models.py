from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tests.unit.operator.conftest import spec_dict
from workerfleet.operator import models


def parse(**overrides: Any) -> models.WorkerPoolSpec:
    return models.WorkerPoolSpec.model_validate(spec_dict(**overrides))


def test_defaults_fill_a_minimal_spec() -> None:
    spec = parse()
    assert spec.replicas.min == 1
    assert spec.replicas.max == 10
    assert spec.replicas.override is None
    assert spec.worker.concurrency == 4
    assert spec.worker.heartbeat_seconds == 5.0
    assert spec.worker.lease_seconds == 15.0
    assert spec.worker.shutdown_grace_seconds == 30.0
    assert spec.scaling.jobs_per_worker == 10
    assert spec.resources.requests == {"cpu": "50m", "memory": "64Mi"}
    assert spec.metrics.service is True
    assert spec.paused is False


def test_explicit_lease_wins_over_heartbeat_multiple() -> None:
    spec = parse(worker={"handlers": "x", "leaseDuration": "1m"})
    assert spec.worker.lease_seconds == 60.0


def test_camel_case_aliases_round_trip() -> None:
    spec = parse(replicas={"min": 2, "max": 5})
    dumped = spec.model_dump(by_alias=True, exclude_none=True)
    assert dumped["replicas"] == {"min": 2, "max": 5}
    assert dumped["database"] == {"secretRef": {"name": "queue-db", "key": "dsn"}}
    assert models.WorkerPoolSpec.model_validate(dumped) == spec


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"replicas": {"min": 5, "max": 2}}, "replicas.min must be less than or equal"),
        ({"replicas": {"max": 2, "override": 3}}, "replicas.override must be less than"),
        ({"scaling": {"fallbackReplicas": 20}}, "scaling.fallbackReplicas"),
        ({"scaling": {"maxScaleUpStep": "150"}}, "maxScaleUpStep"),
        ({"scaling": {"maxScaleUpStep": 0}}, "maxScaleUpStep"),
        ({"scaling": {"maxScaleUpStep": "0%"}}, "maxScaleUpStep"),
        ({"scaling": {"jobsPerWorker": 0}}, "jobsPerWorker"),
        ({"scaling": {"pollInterval": "0s"}}, "scaling.pollInterval must be at least 1s"),
        ({"scaling": {"pollInterval": "500ms"}}, "scaling.pollInterval must be at least 1s"),
        ({"scaling": {"pollInterval": "0.5"}}, "scaling.pollInterval must be at least 1s"),
        ({"env": [{"name": "WORKERFLEET_DSN", "value": "x"}]}, "set by the operator"),
        ({"env": [{"name": "POD_IP", "value": "x"}]}, "set by the operator"),
        (
            {"env": [{"name": "A", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "a"}}}]},
            "either value or valueFrom",
        ),
        ({"env": [{"name": "A", "valueFrom": {}}]}, "exactly one of"),
        ({"queue": "Bad Queue"}, "queue"),
        ({"worker": {"handlers": "not a module"}}, "handlers"),
        ({"worker": {"handlers": "x", "jobTimeout": "ten minutes"}}, "jobTimeout"),
        ({"worker": {"handlers": "x", "concurrency": -1}}, "concurrency"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_invalid_specs_are_refused_naming_the_problem(
    overrides: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        parse(**overrides)
    assert fragment in str(caught.value)


def test_percentage_scale_up_step_is_accepted() -> None:
    assert parse(scaling={"maxScaleUpStep": "50%"}).scaling.max_scale_up_step == "50%"


@pytest.mark.parametrize("interval", ["1s", "1500ms", "1", "2.5", "1m30s", "1d"])
def test_poll_intervals_of_a_second_or_more_are_accepted(interval: str) -> None:
    # The CEL twin of the rule accepts the same (tests/integration/operator/test_crds.py).
    assert parse(scaling={"pollInterval": interval}).scaling.poll_interval == interval


def test_label_selector_requirement_values_follow_operator() -> None:
    models.LabelSelectorRequirement(key="team", operator="In", values=["mail"])
    models.LabelSelectorRequirement(key="team", operator="Exists")
    with pytest.raises(ValidationError, match="need values"):
        models.LabelSelectorRequirement(key="team", operator="In")
    with pytest.raises(ValidationError, match="take none"):
        models.LabelSelectorRequirement(key="team", operator="Exists", values=["x"])


def test_monitor_defaults() -> None:
    spec = models.MonitorSpec.model_validate({})
    assert spec.interval_seconds == 30.0
    assert spec.dead_worker_after_seconds == 120.0
    assert spec.rules.no_workers_with_pending.hold_for == "1m"
    assert spec.rules.failed_jobs.threshold == 10
    assert spec.alerts.events is True
    assert spec.alerts.webhook is None
    dumped = spec.model_dump(by_alias=True)
    assert dumped["rules"]["noWorkersWithPending"]["for"] == "1m"


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"rules": {"failedJobs": {"threshold": 0}}}, "threshold"),
        ({"rules": {"deadJobs": {"threshold": 0}}}, "threshold"),
        ({"rules": {"failedJobs": {"window": "15 minutes"}}}, "window"),
        ({"rules": {"failedJobs": {"window": "0s"}}}, "rules.failedJobs.window must be longer"),
        ({"rules": {"deadJobs": {"window": "61m"}}}, "rules.deadJobs.window must be at most 1h"),
        ({"rules": {"noWorkersWithPending": {"for": "soon"}}}, "for"),
        ({"rules": {"oldestPending": {"threshold": "0"}}}, "rules.oldestPending.threshold"),
        ({"alerts": {"webhook": {}}}, "secretRef"),
        ({"alerts": {"webhook": {"secretRef": {"name": ""}}}}, "name"),
        ({"alerts": {"webhook": {"secretRef": {"name": "w"}, "timeout": "0"}}}, "timeout"),
        ({"alerts": {"webhook": {"secretRef": {"name": "w"}, "timeout": "61s"}}}, "timeout"),
        ({"interval": "1m", "alerts": {"repeatInterval": "59s"}}, "alerts.repeatInterval"),
    ],
)
def test_invalid_monitor_specs_are_refused_naming_the_field(
    raw: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        models.MonitorSpec.model_validate(raw)
    assert fragment in str(caught.value)


def test_monitor_rule_and_alert_defaults() -> None:
    spec = models.MonitorSpec.model_validate(
        {"alerts": {"webhook": {"secretRef": {"name": "hook"}}, "repeatInterval": "1h"}}
    )
    assert spec.stuck_job_after_seconds == 0.0
    assert spec.rules.failed_jobs.window_minutes == 15
    assert spec.rules.dead_jobs.threshold == 1
    assert spec.rules.queue_growing.hold_for_seconds == 600.0
    assert spec.rules.running_exceeds_capacity.hold_for_seconds == 120.0
    assert spec.alerts.repeat_seconds == 3600.0
    webhook = spec.alerts.webhook
    assert webhook is not None
    assert (webhook.secret_ref.key, webhook.format, webhook.timeout_seconds) == (
        "url",
        "generic",
        10.0,
    )


def test_windows_round_up_to_whole_minutes() -> None:
    rule = models.FailedJobsRule.model_validate({"window": "90s"})
    assert rule.window_minutes == 2
    assert models.FailedJobsRule.model_validate({"window": "1h"}).window_minutes == 60


def test_status_model_dumps_camel_case() -> None:
    status = models.QueueStatus(pending=3, oldest_pending_seconds=5, oldest_pending="5s")
    assert status.model_dump(by_alias=True, exclude_none=True)["oldestPendingSeconds"] == 5

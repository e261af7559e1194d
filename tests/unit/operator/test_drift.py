from __future__ import annotations

from dataclasses import replace

from workerfleet.operator.drift import apply_cause
from workerfleet.operator.views import DeploymentView

LIVE = DeploymentView(
    name="emails",
    uid="u",
    generation=4,
    spec_hash="abc",
    replicas=2,
    ready_replicas=2,
    updated_replicas=2,
    observed_generation=4,
)


def test_up_to_date_deployment_needs_nothing() -> None:
    assert apply_cause("abc", 2, LIVE, written_generation=4) is None
    assert apply_cause("abc", 2, LIVE, written_generation=None) is None


def test_each_cause() -> None:
    assert apply_cause("abc", 2, None, None) == "missing"
    assert apply_cause("def", 2, LIVE, 4) == "spec"
    assert apply_cause("abc", 3, LIVE, 4) == "replicas"
    assert apply_cause("abc", 2, replace(LIVE, generation=5), 4) == "edited"


def test_an_older_generation_from_a_lagging_watch_is_not_an_edit() -> None:
    assert apply_cause("abc", 2, replace(LIVE, generation=3), 4) is None


def test_sync_due() -> None:
    from workerfleet.operator.handlers import (
        MIN_SYNC_INTERVAL_SECONDS,
        STATUS_INTERVAL_SECONDS,
        sync_due,
    )

    assert sync_due(None, None, 10.0)
    assert not sync_due(10.0, None, 10.0 + STATUS_INTERVAL_SECONDS - 0.1)
    assert sync_due(10.0, None, 10.0 + STATUS_INTERVAL_SECONDS)
    changed = 10.5
    assert not sync_due(10.0, changed, 10.0 + MIN_SYNC_INTERVAL_SECONDS - 0.1)
    assert sync_due(10.0, changed, 10.0 + MIN_SYNC_INTERVAL_SECONDS)
    assert not sync_due(10.0, 9.0, 10.0 + MIN_SYNC_INTERVAL_SECONDS)

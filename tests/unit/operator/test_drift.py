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

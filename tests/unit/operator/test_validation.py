from __future__ import annotations

from typing import Any

from tests.unit.operator.conftest import spec_dict
from workerfleet.operator import validation


def problem(name: str = "emails", **overrides: Any) -> str | None:
    return validation.parse_pool(name, spec_dict(**overrides)).problem


def test_a_sound_spec_has_no_problem() -> None:
    parsed = validation.parse_pool("emails", spec_dict())
    assert parsed.problem is None
    assert parsed.spec is not None


def test_a_broken_rule_is_named_at_its_field_as_the_api_server_names_it() -> None:
    found = problem(worker={"handlers": "x", "heartbeatInterval": "10s", "leaseDuration": "5s"})
    assert found == (
        "spec.worker.leaseDuration: worker.leaseDuration must be longer than "
        "worker.heartbeatInterval, or a live worker loses its jobs between two heartbeats"
    )


def test_zero_durations_that_must_be_positive() -> None:
    found = problem(worker={"handlers": "x", "heartbeatInterval": "0s"})
    assert found is not None
    assert found.startswith("spec.worker.heartbeatInterval: worker.heartbeatInterval must be")


def test_list_items_are_named_by_index() -> None:
    found = problem(env=[{"name": "A", "value": "1"}, {"name": "A", "value": "2"}])
    assert found == "spec.env[1]: env name A is set twice"
    found = problem(env=[{"name": "WORKERFLEET_X", "value": "1"}])
    assert found is not None
    assert found.startswith("spec.env[0].name: env names starting with WORKERFLEET_")


def test_messages_name_the_key_at_fault() -> None:
    found = problem(resources={"requests": {"memroy": "64Mi"}})
    assert found is not None
    assert found.startswith("spec.resources.requests: resources.requests.memroy is not a resource")


def test_schema_errors_name_the_field_path() -> None:
    found = problem(worker={"handlers": "x", "concurrency": 0})
    assert found is not None
    assert found.startswith("spec.worker.concurrency:")


def test_pool_name_must_fit_the_service_name() -> None:
    found = problem(name="x" * 60)
    assert found is not None
    assert "metadata.name" in found
    assert problem(name="9lives") is not None

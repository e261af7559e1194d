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


def test_lease_shorter_than_heartbeat_names_both_fields() -> None:
    found = problem(worker={"handlers": "x", "heartbeatInterval": "10s", "leaseDuration": "5s"})
    assert found is not None
    assert "spec.worker.leaseDuration (5s)" in found
    assert "spec.worker.heartbeatInterval (10s)" in found


def test_retry_base_above_cap() -> None:
    found = problem(worker={"handlers": "x", "retryBase": "10m", "retryCap": "1m"})
    assert found is not None
    assert found.startswith("spec.worker.retryBase (10m)")


def test_zero_durations_that_must_be_positive() -> None:
    assert problem(worker={"handlers": "x", "heartbeatInterval": "0s"}) == (
        "spec.worker.heartbeatInterval must be longer than 0"
    )


def test_schema_errors_name_the_field_path() -> None:
    found = problem(worker={"handlers": "x", "concurrency": 0})
    assert found is not None
    assert found.startswith("spec.worker.concurrency:")


def test_pool_name_must_fit_the_service_name() -> None:
    found = problem(name="x" * 60)
    assert found is not None
    assert "metadata.name" in found
    assert problem(name="9lives") is not None

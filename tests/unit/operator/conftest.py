"""Shared builders of specs for the operator's unit tests."""

from __future__ import annotations

from typing import Any

import pytest

from workerfleet.operator import builders, models


def spec_dict(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "image": "workerfleet-worker:0.1.0",
        "queue": "emails",
        "database": {"secretRef": {"name": "queue-db"}},
        "worker": {"handlers": "workerfleet.worker.demo_handlers"},
    }
    spec.update(overrides)
    return spec


@pytest.fixture
def spec() -> models.WorkerPoolSpec:
    return models.WorkerPoolSpec.model_validate(spec_dict())


@pytest.fixture
def owner() -> builders.Owner:
    return builders.Owner(name="emails", namespace="mail", uid="1234-abcd")

"""The ScaledObject and TriggerAuthentication a KEDA user writes for a workerfleet queue."""

from __future__ import annotations

import pytest

from localcluster import keda_manifests


def test_the_trigger_counts_ready_pending_and_running_jobs_of_the_queue() -> None:
    query = keda_manifests.depth_query("emails")

    assert "queue = 'emails'" in query
    assert "state = 'running'" in query
    assert "state = 'pending' AND run_at <= now()" in query


def test_a_queue_name_that_would_need_quoting_is_refused() -> None:
    with pytest.raises(ValueError, match="KEDA's query"):
        keda_manifests.depth_query("x' OR '1'='1")


def test_defaults_leave_polling_cooldown_and_behaviour_to_keda() -> None:
    manifest = keda_manifests.scaled_object(
        "ns", "so", "workers", "emails", 10, (0, 20), "queue-db", keda_manifests.DEFAULTS
    )
    spec = manifest["spec"]

    assert spec["scaleTargetRef"] == {"name": "workers"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (0, 20)
    assert "pollingInterval" not in spec
    assert "cooldownPeriod" not in spec
    assert "advanced" not in spec
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "postgresql"
    assert trigger["metadata"]["targetQueryValue"] == "10"
    assert trigger["metadata"]["query"] == keda_manifests.depth_query("emails")
    assert trigger["authenticationRef"] == {"name": "queue-db"}


def test_fast_polls_every_second_and_may_scale_up_to_the_maximum_at_once() -> None:
    manifest = keda_manifests.scaled_object(
        "ns", "so", "workers", "emails", 10, (0, 20), "queue-db", keda_manifests.FAST
    )
    spec = manifest["spec"]

    assert spec["pollingInterval"] == 1
    assert "cooldownPeriod" not in spec
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert "scaleDown" not in behavior
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert behavior["scaleUp"]["policies"] == [{"type": "Pods", "value": 20, "periodSeconds": 1}]


def test_the_authentication_reads_the_connection_from_the_secret() -> None:
    manifest = keda_manifests.trigger_authentication("ns", "queue-db", "queue-db", "dsn")

    assert manifest["spec"]["secretTargetRef"] == [
        {"parameter": "connection", "name": "queue-db", "key": "dsn"}
    ]

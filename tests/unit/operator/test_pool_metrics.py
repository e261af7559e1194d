"""A pool's gauges: set from its status and spec, dropped with the pool (the at-maximum
alert compares desired with max, so a stale maximum would be a false alarm)."""

from __future__ import annotations

from prometheus_client import REGISTRY

from workerfleet.operator import metrics

NAMESPACE = "metrics-test"
STATUS = {"desiredReplicas": 4, "readyReplicas": 3}


def value(name: str, pool: str) -> float | None:
    return REGISTRY.get_sample_value(
        f"workerfleet_operator_pool_{name}", {"namespace": NAMESPACE, "pool": pool}
    )


def test_the_maximum_is_exported_beside_desired_and_ready() -> None:
    metrics.record_pool(NAMESPACE, "emails", STATUS, 4)
    assert (value("desired_replicas", "emails"), value("max_replicas", "emails")) == (4.0, 4.0)
    assert value("ready_replicas", "emails") == 3.0
    metrics.record_pool(NAMESPACE, "emails", STATUS, 10)
    assert value("max_replicas", "emails") == 10.0
    metrics.forget_pool(NAMESPACE, "emails")


def test_an_invalid_spec_drops_the_maximum_and_keeps_the_rest() -> None:
    metrics.record_pool(NAMESPACE, "reports", STATUS, 4)
    metrics.record_pool(NAMESPACE, "reports", STATUS, None)
    assert value("max_replicas", "reports") is None
    assert value("desired_replicas", "reports") == 4.0
    metrics.record_pool(NAMESPACE, "reports", STATUS, None)  # nothing left to drop
    metrics.forget_pool(NAMESPACE, "reports")


def test_a_deleted_pool_leaves_no_series() -> None:
    metrics.record_pool(NAMESPACE, "thumbnails", STATUS, 6)
    metrics.forget_pool(NAMESPACE, "thumbnails")
    for name in ("desired_replicas", "ready_replicas", "max_replicas"):
        assert value(name, "thumbnails") is None

"""An apply that keeps failing the same way waits longer and longer; anything new goes at once."""

from __future__ import annotations

from workerfleet.operator.apply_backoff import (
    APPLY_BACKOFF_CAP_SECONDS,
    ApplyFailures,
    fingerprint,
)

FULL = "Service p1-metrics: Internal error occurred: failed to allocate a serviceIP: range is full"


def test_the_same_manifest_failing_the_same_way_is_held_with_growing_delays() -> None:
    failures = ApplyFailures(initial_seconds=1.0, cap_seconds=8.0)
    now, retries = 100.0, []
    for _ in range(6):
        assert failures.held("Service", "m1", now) is None  # due: sent again
        failing = failures.failed("Service", "m1", FULL, invalid=False, now=now)
        retries.append(failing.retry_at - now)
        held = failures.held("Service", "m1", now + 0.5)
        assert held is failing  # a sync in between repeats the failure, sends nothing
        now = failing.retry_at
    assert retries == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert failures.retry_at() == now


def test_the_condition_message_says_why_and_stays_the_same_while_held() -> None:
    failures = ApplyFailures(initial_seconds=1.0, cap_seconds=APPLY_BACKOFF_CAP_SECONDS)
    first = failures.failed("Service", "m1", FULL, invalid=False, now=0.0)
    assert first.message == FULL  # once is not yet a pattern
    third = failures.failed("Service", "m1", FULL, invalid=False, now=1.0)
    third = failures.failed("Service", "m1", FULL, invalid=False, now=3.0)
    assert third.message.startswith(FULL)
    assert "failed 3 times in a row the same way" in third.message
    assert "next attempt in 4s" in third.message
    assert "up to every 5m" in third.message
    assert failures.held("Service", "m1", 4.0) == third == failures.held("Service", "m1", 6.9)


def test_another_manifest_or_another_error_starts_afresh_and_success_forgets() -> None:
    failures = ApplyFailures(initial_seconds=1.0, cap_seconds=60.0)
    for at in (0.0, 1.0, 3.0):
        failures.failed("Deployment", "replicas-2", FULL, invalid=False, now=at)
    assert failures.held("Deployment", "replicas-3", 3.5) is None  # the spec changed: try
    other = failures.failed("Deployment", "replicas-2", "quota exceeded", invalid=False, now=4)
    assert other.failures == 1
    failures.succeeded("Deployment")
    assert failures.held("Deployment", "replicas-2", 4.1) is None
    assert failures.retry_at() is None
    # Kinds are independent: a failing Service never holds back the Deployment.
    failures.failed("Service", "svc", FULL, invalid=False, now=5.0)
    assert failures.held("Deployment", "replicas-2", 5.1) is None


def test_the_fingerprint_is_of_everything_sent() -> None:
    two = {"kind": "Deployment", "spec": {"replicas": 2, "template": {"a": 1}}}
    three = {"kind": "Deployment", "spec": {"replicas": 3, "template": {"a": 1}}}
    assert fingerprint(two) != fingerprint(three)
    assert fingerprint(two) == fingerprint({"spec": {"template": {"a": 1}, "replicas": 2}, **two})

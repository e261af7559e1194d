"""`workerfleet-operator check` (the chart's helm test): its verdict on what the pods said."""

from __future__ import annotations

from typing import Any

from workerfleet.operator.health_check import PodAnswer, ask, verdict


def answer(pod: str, role: str | None, healthz: int = 200, readyz: int = 200) -> PodAnswer:
    return PodAnswer(pod, healthz, readyz, role)


def test_one_acting_and_the_rest_standing_by_passes() -> None:
    assert verdict([answer("a", "leader"), answer("b", "standby")]) is None
    assert verdict([answer("a", "standalone")]) is None


def test_no_pod_none_or_two_acting_fail() -> None:
    assert verdict([]) == "no running operator pod"
    assert verdict([answer("a", "standby"), answer("b", "standby")]) == (
        "0 operator pods act (none); exactly one must"
    )
    assert verdict([answer("a", "leader"), answer("b", "leader")]) == (
        "2 operator pods act (a, b); exactly one must"
    )


def test_an_unhealthy_or_unready_pod_fails_by_name() -> None:
    assert verdict([answer("a", "leader"), answer("b", "standby", healthz=503)]) == (
        "b: /healthz answered 503"
    )
    assert verdict([answer("a", None, readyz=0)]) == "a: /readyz answered 0"
    assert verdict([answer("a", "leader"), answer("b", "stopping")]) == (
        "b: role 'stopping' is neither acting nor standby"
    )


def test_ask_reads_both_endpoints_of_the_pod() -> None:
    asked: list[str] = []

    def fetch(url: str) -> tuple[int, dict[str, Any]]:
        asked.append(url)
        return 200, {"ready": True, "role": "standby"}

    assert ask("op-1", "127.0.0.9", 8080, fetch) == answer("op-1", "standby")
    assert asked == ["http://127.0.0.9:8080/healthz", "http://127.0.0.9:8080/readyz"]

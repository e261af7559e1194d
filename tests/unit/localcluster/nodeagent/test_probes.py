"""Probe specs and the threshold logic that turns probe outcomes into verdicts."""

from __future__ import annotations

import pytest

from localcluster.nodeagent.probes import (
    ProbeConfigError,
    ProbeSpec,
    ProbeTracker,
    first_probe_at,
    is_http_success,
    next_probe_at,
    resolve_port,
)


def spec(**fields: object) -> ProbeSpec:
    return ProbeSpec.from_json({"httpGet": {"path": "/readyz", "port": 8080}, **fields})


def test_http_probe_parsing_applies_defaults() -> None:
    parsed = spec()
    assert parsed.kind == "httpGet"
    assert parsed.path == "/readyz"
    assert parsed.port == 8080
    assert parsed.scheme == "HTTP"
    assert (parsed.period_seconds, parsed.timeout_seconds) == (10.0, 1.0)
    assert (parsed.success_threshold, parsed.failure_threshold) == (1, 3)
    assert parsed.initial_delay_seconds == 0.0
    assert parsed.termination_grace_period_seconds is None


def test_http_probe_parsing_keeps_host_headers_and_timing() -> None:
    parsed = ProbeSpec.from_json(
        {
            "httpGet": {
                "host": "127.0.0.9",
                "port": "http",
                "path": "/h",
                "scheme": "https",
                "httpHeaders": [{"name": "X-A", "value": "1"}],
            },
            "initialDelaySeconds": 3,
            "periodSeconds": 2,
            "timeoutSeconds": 4,
            "successThreshold": 2,
            "failureThreshold": 5,
            "terminationGracePeriodSeconds": 7,
        }
    )
    assert (parsed.host, parsed.port, parsed.scheme, parsed.headers) == (
        "127.0.0.9",
        "http",
        "HTTPS",
        (("X-A", "1"),),
    )
    assert (parsed.initial_delay_seconds, parsed.period_seconds, parsed.timeout_seconds) == (
        3,
        2,
        4,
    )
    assert (parsed.success_threshold, parsed.failure_threshold) == (2, 5)
    assert parsed.termination_grace_period_seconds == 7


def test_tcp_and_exec_probes_parse() -> None:
    assert ProbeSpec.from_json({"tcpSocket": {"port": 5432}}).kind == "tcpSocket"
    exec_spec = ProbeSpec.from_json({"exec": {"command": ["true"]}})
    assert (exec_spec.kind, exec_spec.command) == ("exec", ("true",))
    with pytest.raises(ProbeConfigError, match="no command"):
        ProbeSpec.from_json({"exec": {"command": []}})
    with pytest.raises(ProbeConfigError, match="no handler"):
        ProbeSpec.from_json({"periodSeconds": 1})


def test_ports_by_number_or_name() -> None:
    container = {"name": "web", "ports": [{"name": "http", "containerPort": 8080}]}
    assert resolve_port(9000, container) == 9000
    assert resolve_port("9001", container) == 9001
    assert resolve_port("http", container) == 8080
    with pytest.raises(ProbeConfigError, match=r"'metrics'.*\['http'\]"):
        resolve_port("metrics", container)


def test_readiness_needs_success_threshold_consecutive_successes() -> None:
    probe = spec(successThreshold=2, failureThreshold=2)
    tracker = ProbeTracker.initial("readiness")
    assert tracker.result is False
    tracker = tracker.observe(True, probe)
    assert tracker.result is False
    tracker = tracker.observe(False, probe).observe(True, probe)
    assert tracker.result is False  # the failure broke the streak
    tracker = tracker.observe(True, probe)
    assert tracker.result is True


def test_liveness_fails_only_after_failure_threshold_in_a_row() -> None:
    probe = spec(failureThreshold=3)
    tracker = ProbeTracker.initial("liveness")
    assert tracker.result is True
    tracker = tracker.observe(False, probe).observe(False, probe)
    assert tracker.result is True
    tracker = tracker.observe(True, probe).observe(False, probe).observe(False, probe)
    assert tracker.result is True
    tracker = tracker.observe(False, probe)
    assert tracker.result is False
    assert tracker.failures == 3


def test_startup_starts_out_failed() -> None:
    assert ProbeTracker.initial("startup").result is False


def test_schedule_honours_initial_delay_and_period() -> None:
    probe = spec(initialDelaySeconds=5, periodSeconds=2)
    assert first_probe_at(100.0, probe) == 105.0
    assert next_probe_at(105.0, probe) == 107.0


@pytest.mark.parametrize(
    ("status", "ok"),
    [
        (200, True),
        (204, True),
        (302, True),
        (399, True),
        (400, False),
        (404, False),
        (500, False),
        (503, False),
    ],
)
def test_http_success_is_2xx_or_3xx(status: int, ok: bool) -> None:
    assert is_http_success(status) is ok

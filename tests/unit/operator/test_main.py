"""The operator process's own settings: leader election timings and namespace scanning."""

from __future__ import annotations

import pytest

from workerfleet.operator import main
from workerfleet.operator.settings import OperatorSettings


def test_named_namespaces_need_no_scanning_patterns_do() -> None:
    assert main.serves_named_namespaces(("team-a", "team-b"))
    assert not main.serves_named_namespaces(())
    assert not main.serves_named_namespaces(("team-*",))
    assert not main.serves_named_namespaces(("!kube-system",))


def test_unsafe_lease_timings_are_refused_only_with_leader_election() -> None:
    with pytest.raises(ValueError, match="leaseDuration > renewDeadline > retryPeriod"):
        OperatorSettings(leader_election=True, lease_duration=5, renew_deadline=5)
    OperatorSettings(leader_election=False, lease_duration=5, renew_deadline=5)
    settings = OperatorSettings(leader_election=True, lease_duration="8s", retry_period="1")
    assert settings.lease_timing.worst_takeover_seconds == 10


def test_a_refused_setting_is_reported_by_variable_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WORKERFLEET_OPERATOR_LEADER_ELECTION", "true")
    monkeypatch.setenv("WORKERFLEET_OPERATOR_RETRY_PERIOD", "9")
    assert main.main([]) == 1
    assert "leaseDuration > renewDeadline > retryPeriod" in capsys.readouterr().err

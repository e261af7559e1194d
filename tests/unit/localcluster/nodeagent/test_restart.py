"""Restart policy, crash-loop back-off and resumption after an agent restart."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from localcluster.nodeagent.restart import (
    RESTART_BACKOFF_CAP_SECONDS,
    exit_code_of,
    next_consecutive_restarts,
    restart_delay_seconds,
    resume_from_status,
    should_restart,
    termination_reason,
)
from localcluster.nodeagent.status import Terminated, Waiting

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("policy", "exit_code", "init", "expected"),
    [
        ("Always", 0, False, True),
        ("Always", 1, False, True),
        ("OnFailure", 0, False, False),
        ("OnFailure", 2, False, True),
        ("Never", 0, False, False),
        ("Never", 137, False, False),
        ("Always", 0, True, False),
        ("Always", 1, True, True),
        ("Never", 1, True, False),
    ],
)
def test_should_restart(policy: str, exit_code: int, init: bool, expected: bool) -> None:
    assert should_restart(policy, exit_code, init_container=init) is expected


def test_backoff_doubles_from_one_second_and_is_capped() -> None:
    delays = [restart_delay_seconds(n) for n in range(1, 9)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert restart_delay_seconds(10_000) == RESTART_BACKOFF_CAP_SECONDS


def test_long_run_resets_the_crash_loop() -> None:
    assert next_consecutive_restarts(4, ran_seconds=0.5) == 5
    assert next_consecutive_restarts(4, ran_seconds=600.0) == 1


def test_exit_codes_of_signals_follow_the_runtime_convention() -> None:
    assert exit_code_of(0) == (0, None)
    assert exit_code_of(3) == (3, None)
    assert exit_code_of(-15) == (143, 15)
    assert exit_code_of(-9) == (137, 9)
    assert termination_reason(0) == "Completed"
    assert termination_reason(143) == "Error"


def test_resume_without_previous_status_starts_fresh() -> None:
    resumed = resume_from_status(None, "Always", NOW)
    assert resumed.start
    assert resumed.state == Waiting("ContainerCreating")
    assert resumed.restart_count == 0
    assert not resumed.has_run


def test_resume_running_container_counts_as_killed_and_restarts_under_always() -> None:
    previous = {"restartCount": 2, "state": {"running": {"startedAt": "2025-01-02T03:00:00Z"}}}
    resumed = resume_from_status(previous, "Always", NOW)
    assert resumed.start
    assert resumed.has_run
    assert resumed.restart_count == 2
    assert isinstance(resumed.last_state, Terminated)
    assert resumed.last_state.exit_code == 137
    assert resumed.last_state.reason == "ContainerStatusUnknown"


def test_resume_running_container_under_never_stays_terminated() -> None:
    previous = {"restartCount": 0, "state": {"running": {"startedAt": "2025-01-02T03:00:00Z"}}}
    resumed = resume_from_status(previous, "Never", NOW)
    assert not resumed.start
    assert isinstance(resumed.state, Terminated)
    assert resumed.state.exit_code == 137


def test_resume_completed_container_under_on_failure_is_not_rerun() -> None:
    previous = {
        "restartCount": 1,
        "state": {
            "terminated": {
                "exitCode": 0,
                "reason": "Completed",
                "finishedAt": "2025-01-02T03:00:00Z",
            }
        },
    }
    resumed = resume_from_status(previous, "OnFailure", NOW)
    assert not resumed.start
    assert resumed.state == Terminated(
        exit_code=0, reason="Completed", finished_at=datetime(2025, 1, 2, 3, 0, tzinfo=UTC)
    )


def test_resume_waiting_after_crash_keeps_last_state() -> None:
    previous = {
        "restartCount": 3,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {
            "terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2025-01-02T03:00:00Z"}
        },
    }
    resumed = resume_from_status(previous, "Always", NOW, initial_state=Waiting("PodInitializing"))
    assert resumed.start
    assert resumed.has_run
    assert resumed.state == Waiting("PodInitializing")
    assert resumed.last_state is not None
    assert resumed.last_state.exit_code == 1

"""Restart decisions of the local node agent: restartPolicy, crash-loop back-off, exit codes.

The back-off is the kubelet's shape at test speed: the kubelet waits 10s doubling to 5m;
here the n-th consecutive restart waits RESTART_BACKOFF_BASE_SECONDS * 2**(n-1), capped
at RESTART_BACKOFF_CAP_SECONDS, and a container that ran for BACKOFF_RESET_AFTER_SECONDS
starts over from the base delay."""

from __future__ import annotations

import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from localcluster.nodeagent.status import ContainerState, Terminated, Waiting, parse_time

RESTART_BACKOFF_BASE_SECONDS = 1.0
RESTART_BACKOFF_CAP_SECONDS = 30.0
BACKOFF_RESET_AFTER_SECONDS = 60.0
START_ERROR_EXIT_CODE = 128
# What a container that was running when the agent died is recorded as: its process
# group was killed (SIGKILL) by whoever cleaned up after the agent.
LOST_EXIT_CODE = 137
LOST_REASON = "ContainerStatusUnknown"


def should_restart(restart_policy: str, exit_code: int, *, init_container: bool = False) -> bool:
    """Whether a container that exited with exit_code runs again. Init containers run to
    success: Always behaves as OnFailure for them."""
    if restart_policy == "Never":
        return False
    if restart_policy == "OnFailure" or init_container:
        return exit_code != 0
    return True


def restart_delay_seconds(consecutive_restarts: int) -> float:
    """Delay before the n-th consecutive restart (n >= 1)."""
    exponent = max(consecutive_restarts - 1, 0)
    return min(
        RESTART_BACKOFF_BASE_SECONDS * (2.0 ** min(exponent, 30)), RESTART_BACKOFF_CAP_SECONDS
    )


def next_consecutive_restarts(previous: int, ran_seconds: float) -> int:
    """The crash-loop counter after an exit: reset by a long enough run."""
    return 1 if ran_seconds >= BACKOFF_RESET_AFTER_SECONDS else previous + 1


def exit_code_of(returncode: int) -> tuple[int, int | None]:
    """(exitCode, signal) as a container runtime reports them: a process killed by signal
    N exits with 128 + N."""
    if returncode < 0:
        return 128 - returncode, -returncode
    return returncode, None


def termination_reason(exit_code: int) -> str:
    return "Completed" if exit_code == 0 else "Error"


def signal_name(number: int | None) -> str:
    if number is None:
        return ""
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


@dataclass(frozen=True)
class ResumeState:
    """Where a container picks up: fresh, or from the status a previous agent published."""

    state: ContainerState = field(default_factory=lambda: Waiting("ContainerCreating"))
    restart_count: int = 0
    last_state: Terminated | None = None
    has_run: bool = False
    start: bool = True


def parse_terminated(terminated: Mapping[str, Any], fallback_time: datetime) -> Terminated:
    finished = terminated.get("finishedAt")
    started = terminated.get("startedAt")
    return Terminated(
        exit_code=int(terminated.get("exitCode", 0)),
        reason=str(terminated.get("reason", "")),
        message=str(terminated.get("message", "")),
        finished_at=parse_time(finished) if finished else fallback_time,
        started_at=parse_time(started) if started else None,
        container_id=str(terminated.get("containerID", "")),
        signal=terminated.get("signal"),
    )


def resume_from_status(
    previous: Mapping[str, Any] | None,
    restart_policy: str,
    now: datetime,
    *,
    init_container: bool = False,
    initial_state: ContainerState | None = None,
) -> ResumeState:
    """How a container continues after an agent restart, from the status the previous
    agent published. Its process is gone: a container that was running counts as
    killed, and then restartPolicy decides as for any exit."""
    fresh_state = initial_state or Waiting("ContainerCreating")
    if not previous:
        return ResumeState(state=fresh_state)
    restarts = int(previous.get("restartCount") or 0)
    state = previous.get("state") or {}
    last = (previous.get("lastState") or {}).get("terminated")
    last_state = parse_terminated(last, now) if last else None
    if "terminated" in state:
        ended = parse_terminated(state["terminated"], now)
    elif "running" in state:
        started = state["running"].get("startedAt")
        ended = Terminated(
            exit_code=LOST_EXIT_CODE,
            reason=LOST_REASON,
            finished_at=now,
            started_at=parse_time(started) if started else None,
            message="the node agent restarted and the container's process is gone",
        )
    else:
        return ResumeState(
            state=fresh_state,
            restart_count=restarts,
            last_state=last_state,
            has_run=last_state is not None,
        )
    if should_restart(restart_policy, ended.exit_code, init_container=init_container):
        return ResumeState(
            state=fresh_state, restart_count=restarts, last_state=ended, has_run=True
        )
    return ResumeState(
        state=ended, restart_count=restarts, last_state=last_state, has_run=True, start=False
    )

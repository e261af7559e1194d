"""The workers' fallback rescue: when a worker may run it, how its rounds are
spread, and that a pass counts what it handed back and survives errors."""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest

from workerfleet.worker import health, rescuer
from workerfleet.worker.metrics import WorkerMetrics
from workerfleet.worker.models import RescueResult

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
LEASE = 15.0


def _state(phase: health.Phase = "running", up_since: float | None = 100.0) -> health.RuntimeState:
    state = health.RuntimeState("w", T0, 0.0, 4, phase=phase)
    if up_since is not None:
        state.database_ok(T0, now_monotonic=up_since)
    return state


def test_a_worker_rescues_only_after_a_whole_lease_of_reaching_the_database() -> None:
    state = _state(up_since=100.0)
    assert not rescuer.may_rescue(state, 100.0 + LEASE - 0.1, LEASE)
    assert rescuer.may_rescue(state, 100.0 + LEASE, LEASE)
    # Later successes keep the start of the streak; a failure restarts it.
    state.database_ok(T0, now_monotonic=200.0)
    assert state.database.up_since == 100.0
    state.database_failed(T0, ConnectionRefusedError("refused"))
    assert not rescuer.may_rescue(state, 300.0, LEASE)
    state.database_ok(T0, now_monotonic=300.0)
    assert not rescuer.may_rescue(state, 300.0 + LEASE / 2, LEASE)
    assert rescuer.may_rescue(state, 300.0 + LEASE, LEASE)


@pytest.mark.parametrize("phase", ["starting", "draining", "stopped"])
def test_a_worker_not_running_does_not_rescue(phase: health.Phase) -> None:
    assert not rescuer.may_rescue(_state(phase=phase), 1e9, LEASE)
    assert not rescuer.may_rescue(_state(up_since=None), 1e9, LEASE)


def test_rounds_are_spread_around_the_interval() -> None:
    assert rescuer.first_delay(30.0, lambda: 0.0) == 0.0
    assert rescuer.first_delay(30.0, lambda: 0.5) == 15.0
    assert rescuer.next_delay(30.0, lambda: 0.0) == pytest.approx(24.0)
    assert rescuer.next_delay(30.0, lambda: 1.0) == pytest.approx(36.0)


class FakeRepository:
    def __init__(self, *answers: RescueResult | Exception | None) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def rescue_unless_another_does(self) -> RescueResult | None:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def _rescuer(repository: FakeRepository, state: health.RuntimeState) -> rescuer.FallbackRescuer:
    return rescuer.FallbackRescuer(
        repository,  # type: ignore[arg-type]
        state,
        WorkerMetrics(),
        interval_seconds=30.0,
        lease_seconds=0.0,
    )


async def test_a_pass_counts_what_it_handed_back_and_survives_errors() -> None:
    repository = FakeRepository(
        RescueResult(rescued=3, dead=1),
        None,  # another process held the lock
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
    )
    fallback = _rescuer(repository, _state(up_since=0.0))
    assert await fallback.rescue_once() == RescueResult(3, 1)
    assert await fallback.rescue_once() is None
    assert await fallback.rescue_once() is None
    counted = fallback.metrics.fallback_rescued
    assert counted.labels(outcome="pending")._value.get() == 3
    assert counted.labels(outcome="dead")._value.get() == 1
    assert repository.calls == 3


async def test_no_pass_while_the_database_streak_is_shorter_than_a_lease() -> None:
    repository = FakeRepository()
    fallback = _rescuer(repository, _state(phase="draining", up_since=0.0))
    assert await fallback.rescue_once() is None
    assert repository.calls == 0

"""Leader election decisions (lease.py) and the elector over a Lease store in memory."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from workerfleet.operator import lease
from workerfleet.operator.health import Readiness
from workerfleet.operator.leadership import Conflict, Leadership
from workerfleet.operator.lease import LeaseRecord, Observed, Timing

NOW = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
TIMING = Timing(lease_duration=8, renew_deadline=5, retry_period=1)


def held(by: str | None, version: str = "7", duration: int = 8) -> LeaseRecord:
    return LeaseRecord(by, duration, "a", "r", 2, version)


def test_timings_that_could_let_two_act_are_refused() -> None:
    assert TIMING.problem() is None
    assert "leaseDuration > renewDeadline > retryPeriod" in str(Timing(5, 5, 1).problem())
    assert Timing(8, 5, 6).problem() is not None
    assert Timing(8, 5, 0).problem() is not None


def test_worst_takeover_is_the_lease_duration_and_two_periods() -> None:
    assert TIMING.worst_takeover_seconds == 10


def test_a_free_missing_or_own_lease_may_be_taken_at_once() -> None:
    for record in (LeaseRecord.absent(), held(None), held("me")):
        assert lease.may_take(Observed(record, since=100.0), "me", now=100.0)


def test_someone_elses_lease_is_taken_only_after_it_went_unchanged_for_its_duration() -> None:
    observed = Observed(held("other"), since=100.0)
    assert not lease.may_take(observed, "me", now=107.9)
    assert lease.may_take(observed, "me", now=108.0)


def test_the_clock_restarts_only_when_the_record_changes() -> None:
    first = lease.observe(None, held("other", "7"), now=10.0)
    same = lease.observe(first, held("other", "7"), now=15.0)
    assert same.since == 10.0
    renewed = lease.observe(same, held("other", "8"), now=16.0)
    assert renewed.since == 16.0


def test_taking_over_counts_a_transition_and_stamps_acquire_time() -> None:
    spec = lease.claim(held("other"), "me", 8.0, NOW)
    assert spec == {
        "holderIdentity": "me",
        "leaseDurationSeconds": 8,
        "acquireTime": "2030-01-02T03:04:05.678901Z",
        "renewTime": "2030-01-02T03:04:05.678901Z",
        "leaseTransitions": 3,
    }
    renewal = lease.claim(held("me"), "me", 8.0, NOW)
    assert renewal["acquireTime"] == "a"
    assert renewal["leaseTransitions"] == 2
    first = lease.claim(LeaseRecord.absent(), "me", 8.0, NOW)
    assert first["leaseTransitions"] == 0


def test_release_leaves_nobody_holding_and_an_instant_expiry() -> None:
    spec = lease.release(held("me"), NOW)
    assert spec["holderIdentity"] is None
    assert spec["leaseDurationSeconds"] == lease.RELEASED_DURATION_SECONDS
    assert spec["leaseTransitions"] == 2


def test_the_leader_stops_at_the_renew_deadline() -> None:
    assert not lease.lost(last_renewed=10.0, now=14.9, timing=TIMING)
    assert lease.lost(last_renewed=10.0, now=15.0, timing=TIMING)


def test_lease_records_are_read_from_the_api_body() -> None:
    body = {
        "metadata": {"resourceVersion": "42"},
        "spec": {"holderIdentity": "pod-a_1", "leaseDurationSeconds": 8, "leaseTransitions": 4},
    }
    record = LeaseRecord.from_body(body)
    assert (record.holder, record.duration_seconds, record.transitions) == ("pod-a_1", 8, 4)
    assert record.resource_version == "42"
    assert LeaseRecord.from_body({"metadata": {"resourceVersion": "1"}}).holder is None


@pytest.mark.parametrize(
    ("role", "serving", "status"),
    [
        ("starting", False, 503),
        ("standby", False, 200),
        ("leader", False, 503),
        ("leader", True, 200),
        ("standalone", True, 200),
        ("stopping", False, 503),
    ],
)
def test_readiness_says_which_role_the_process_has(role: Any, serving: bool, status: int) -> None:
    code, body = Readiness(role=role, serving=serving, leader="pod-a_1").report()
    assert code == status
    assert body["role"] == role
    assert body["ready"] is (status == 200)
    if role == "standby":
        assert body["leader"] == "pod-a_1"


class MemoryStore:
    """A Lease in memory with the API server's optimistic concurrency."""

    def __init__(self) -> None:
        self.record = LeaseRecord.absent()
        self.version = 0
        self.failing = False
        self.writes: list[str | None] = []

    async def read(self) -> LeaseRecord:
        if self.failing:
            raise ConnectionError("apiserver down")
        return self.record

    async def write(self, record: LeaseRecord, spec: dict[str, Any]) -> LeaseRecord:
        if self.failing:
            raise ConnectionError("apiserver down")
        if record.resource_version != self.record.resource_version:
            raise Conflict("stale")
        self.version += 1
        self.record = LeaseRecord.from_body(
            {"metadata": {"resourceVersion": str(self.version)}, "spec": spec}
        )
        self.writes.append(spec["holderIdentity"])
        return self.record


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def elector(store: MemoryStore, identity: str, clock: Clock) -> Leadership:
    return Leadership(store, identity, TIMING, clock=clock, wall_clock=lambda: NOW)


async def test_one_of_two_candidates_leads_and_the_other_takes_over_after_expiry() -> None:
    store, clock = MemoryStore(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    assert await a._attempt()
    assert not await b._attempt()
    assert (a.leading, b.leading, b.holder) == (True, False, "a")
    clock.now += 7.9  # a stopped renewing (killed): not yet expired for b
    assert not await b._attempt()
    clock.now += 0.1
    assert await b._attempt()
    assert store.record.holder == "b"
    assert store.record.transitions == 1
    # a, back from the dead, sees b: its cached record is stale and it cannot write.
    assert not await a._attempt()
    assert store.writes == ["a", "b"]


async def test_a_standby_takes_a_released_lease_at_its_next_attempt() -> None:
    store, clock = MemoryStore(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    assert await a._attempt()
    assert not await b._attempt()
    await a.release()
    assert store.record.holder is None
    assert await b._attempt()


async def test_hold_gives_up_when_another_holds_the_lease() -> None:
    store, clock = MemoryStore(), Clock()
    a = Leadership(store, "a", Timing(8, 5, 0.001), clock=clock, wall_clock=lambda: NOW)
    assert await a._attempt()
    store.record = held("intruder", version="99")
    reasons: list[str] = []
    await asyncio.wait_for(a.hold(reasons.append), timeout=5)
    assert reasons == ["the lease is held by intruder"]
    assert not a.leading


async def test_hold_gives_up_once_renewals_failed_for_the_renew_deadline() -> None:
    store, clock = MemoryStore(), Clock()
    a = Leadership(store, "a", Timing(8, 5, 0.001), clock=clock, wall_clock=lambda: NOW)
    assert await a._attempt()
    store.failing = True
    reasons: list[str] = []

    async def advance() -> None:
        while not reasons:
            clock.now += 0.5
            await asyncio.sleep(0.001)

    ticking = asyncio.create_task(advance())
    await asyncio.wait_for(a.hold(reasons.append), timeout=5)
    await ticking
    assert len(reasons) == 1
    assert reasons[0].startswith("the lease was not renewed for 5.")


async def test_acquire_returns_false_when_asked_to_stop() -> None:
    store, clock = MemoryStore(), Clock()
    other = elector(store, "other", clock)
    assert await other._attempt()
    stop = asyncio.Event()
    standby = Leadership(store, "me", Timing(8, 5, 0.01), clock=clock, wall_clock=lambda: NOW)
    waiting = asyncio.create_task(standby.acquire(stop))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    stop.set()
    assert await asyncio.wait_for(waiting, timeout=5) is False

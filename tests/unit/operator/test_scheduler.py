"""The operator's one timer: keys fire in due order, once per due time, and only while due."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable

from localcluster.waiting import wait_for_async
from workerfleet.operator.scheduler import Scheduler


async def test_keys_fire_in_due_order_and_a_removed_key_never_fires() -> None:
    fired: list[Hashable] = []
    loop = asyncio.get_running_loop()
    scheduler = Scheduler(fired.append, grain_seconds=0.0)
    now = loop.time()
    scheduler.set("second", now + 0.06)
    scheduler.set("first", now + 0.03)
    scheduler.set("deleted", now + 0.01)
    scheduler.remove("deleted")
    scheduler.start()
    await wait_for_async("both keys", lambda: len(fired) == 2, timeout=5, interval=0.005)
    assert fired == ["first", "second"]
    assert len(scheduler) == 0  # fired keys are due again only when set again
    await scheduler.close()


async def test_a_key_set_sooner_wakes_a_sleeping_scheduler() -> None:
    fired: list[Hashable] = []
    wakes: list[None] = []
    scheduler = Scheduler(fired.append, on_wake=lambda: wakes.append(None))
    scheduler.set("far", asyncio.get_running_loop().time() + 3600)
    scheduler.start()
    await wait_for_async("the first wake-up", lambda: wakes, timeout=5, interval=0.005)
    scheduler.earliest("soon", 0.0)  # long overdue
    await wait_for_async("the overdue key", lambda: fired, timeout=5, interval=0.005)
    assert fired == ["soon"]
    assert "far" in scheduler
    await scheduler.close()


async def test_a_failing_job_does_not_stop_the_others() -> None:
    fired: list[Hashable] = []

    def fire(key: Hashable) -> None:
        if key == "bad":
            raise RuntimeError("a bug in one object's job")
        fired.append(key)

    scheduler = Scheduler(fire, grain_seconds=0.0)
    scheduler.set("bad", 0.0)
    scheduler.set("good", 0.0)
    scheduler.start()
    await wait_for_async("the good key", lambda: fired, timeout=5, interval=0.005)
    assert scheduler.running
    scheduler.set("again", 0.0)
    await wait_for_async("the next key", lambda: len(fired) == 2, timeout=5, interval=0.005)
    assert fired == ["good", "again"]
    await scheduler.close()
    assert not scheduler.running

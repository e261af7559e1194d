"""Pool syncs asked for by NOTIFYs and changes: the first at once, a burst folded into a few,
each serving every trigger that arrived before it started."""

from __future__ import annotations

import asyncio

from localcluster.waiting import wait_for_async
from workerfleet.operator.triggers import Triggers, Work


async def idle(triggers: Triggers, *keys: str) -> None:
    await wait_for_async(
        "the evaluations to end",
        lambda: not any(triggers.pending(key) for key in keys),
        timeout=5,
        interval=0.001,
    )


async def test_a_burst_of_pokes_makes_one_evaluation_and_one_follow_up() -> None:
    started: list[tuple[object, float | None]] = []
    release = asyncio.Event()

    async def evaluate(key: object, work: Work) -> None:
        started.append((key, work.since))
        await release.wait()

    triggers = Triggers(evaluate, debounce_seconds=0.0, min_spacing_seconds=0.0)
    triggers.poke("pool", "notify", 1.0)
    for at in range(2, 1002):
        triggers.poke("pool", "notify", float(at))  # folded: nothing runs yet
    await wait_for_async("the first evaluation", lambda: started, timeout=5, interval=0.001)
    assert started == [("pool", 1.0)]  # served the oldest NOTIFY
    for at in range(2000, 3000):
        triggers.poke("pool", "notify", float(at))  # arrive while the evaluation runs
    release.set()
    await idle(triggers, "pool")
    # The burst before it started is served by the first evaluation (its queue read comes
    # after all of them); the 1000 during the run fold into one more, for the oldest.
    assert started == [("pool", 1.0), ("pool", 2000.0)]
    await triggers.close()


async def test_one_sync_serves_every_kind_of_trigger_that_arrived_before_it() -> None:
    served: list[Work] = []
    release = asyncio.Event()

    async def evaluate(key: object, work: Work) -> None:
        served.append(work)
        await release.wait()

    triggers = Triggers(evaluate, debounce_seconds=0.0, min_spacing_seconds=0.0)
    triggers.poke("pool", "children")
    await wait_for_async("the first sync", lambda: served, timeout=5, interval=0.001)
    for kind in ("queue", "children", "due", "queue"):
        triggers.poke("pool", kind)  # a burst of changes while the first sync runs
    triggers.poke("pool", "notify", 7.0)
    release.set()
    await idle(triggers, "pool")
    assert served == [
        Work(frozenset({"children"})),
        Work(frozenset({"queue", "children", "due", "notify"}), since=7.0),
    ]
    await triggers.close()


async def test_pokes_soon_after_a_sync_wait_for_the_spacing_and_fold_into_one() -> None:
    served: list[Work] = []

    async def evaluate(key: object, work: Work) -> None:
        served.append(work)

    triggers = Triggers(evaluate, debounce_seconds=0.0, min_spacing_seconds=1.0)
    triggers.poke("pool", "queue")
    await wait_for_async("the first sync", lambda: served, timeout=5, interval=0.001)
    triggers.poke("pool", "children")
    triggers.poke("pool", "due")
    assert len(served) == 1  # held until the spacing has passed
    await idle(triggers, "pool")
    assert served == [Work(frozenset({"queue"})), Work(frozenset({"children", "due"}))]
    await triggers.close()


async def test_pools_are_evaluated_independently_and_forgotten() -> None:
    seen: list[object] = []

    async def evaluate(key: object, work: Work) -> None:
        seen.append(key)

    triggers = Triggers(evaluate, debounce_seconds=0.0, min_spacing_seconds=0.0)
    triggers.poke("a", "notify", 1.0)
    triggers.poke("b", "queue")
    triggers.poke("gone", "children")
    triggers.forget("gone")
    await idle(triggers, "a", "b")
    assert sorted(map(str, seen)) == ["a", "b"]
    await triggers.close()


async def test_an_evaluation_that_fails_does_not_stop_the_next() -> None:
    calls: list[float | None] = []

    async def evaluate(key: object, work: Work) -> None:
        calls.append(work.since)
        if len(calls) == 1:
            raise RuntimeError("the apiserver said no")

    triggers = Triggers(evaluate, debounce_seconds=0.0, min_spacing_seconds=0.0)
    triggers.poke("pool", "notify", 1.0)
    await idle(triggers, "pool")
    triggers.poke("pool", "notify", 2.0)
    await idle(triggers, "pool")
    assert calls == [1.0, 2.0]

"""NOTIFY-driven evaluations: the first at once, a burst folded into a few."""

from __future__ import annotations

import asyncio

from localcluster.waiting import wait_for_async
from workerfleet.operator.triggers import Triggers


async def idle(triggers: Triggers, *keys: str) -> None:
    await wait_for_async(
        "the evaluations to end",
        lambda: not any(triggers.pending(key) for key in keys),
        timeout=5,
        interval=0.001,
    )


async def test_a_burst_of_pokes_makes_one_evaluation_and_one_follow_up() -> None:
    started: list[tuple[object, float]] = []
    release = asyncio.Event()

    async def evaluate(key: object, since: float) -> None:
        started.append((key, since))
        await release.wait()

    triggers = Triggers(evaluate, debounce_seconds=0.0, min_spacing_seconds=0.0)
    triggers.poke("pool", 1.0)
    for at in range(2, 1002):
        triggers.poke("pool", float(at))  # folded: nothing runs yet
    await wait_for_async("the first evaluation", lambda: started, timeout=5, interval=0.001)
    assert started == [("pool", 1.0)]  # served the oldest NOTIFY
    for at in range(2000, 3000):
        triggers.poke("pool", float(at))  # arrive while the evaluation runs
    release.set()
    await idle(triggers, "pool")
    # The burst before it started is served by the first evaluation (its queue read comes
    # after all of them); the 1000 during the run fold into one more, for the oldest.
    assert started == [("pool", 1.0), ("pool", 2000.0)]
    await triggers.close()


async def test_pools_are_evaluated_independently_and_forgotten() -> None:
    seen: list[object] = []

    async def evaluate(key: object, since: float) -> None:
        seen.append(key)

    triggers = Triggers(evaluate, debounce_seconds=0.0, min_spacing_seconds=0.0)
    triggers.poke("a", 1.0)
    triggers.poke("b", 1.0)
    triggers.poke("gone", 1.0)
    triggers.forget("gone")
    await idle(triggers, "a", "b")
    assert sorted(map(str, seen)) == ["a", "b"]
    await triggers.close()


async def test_an_evaluation_that_fails_does_not_stop_the_next() -> None:
    calls: list[float] = []

    async def evaluate(key: object, since: float) -> None:
        calls.append(since)
        if len(calls) == 1:
            raise RuntimeError("the apiserver said no")

    triggers = Triggers(evaluate, debounce_seconds=0.0, min_spacing_seconds=0.0)
    triggers.poke("pool", 1.0)
    await idle(triggers, "pool")
    triggers.poke("pool", 2.0)
    await idle(triggers, "pool")
    assert calls == [1.0, 2.0]

from __future__ import annotations

from workerfleet.operator.liveness import Activity


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def activity(clock: Clock) -> Activity:
    return Activity(tick_stale_seconds=30, watch_silence_seconds=60, clock=clock, wall_clock=clock)


def test_healthy_without_objects_even_without_ticks() -> None:
    clock = Clock()
    live = activity(clock)
    clock.now += 3600
    assert live.verdict().ok


def test_stale_ticks_fail_while_objects_exist() -> None:
    clock = Clock()
    live = activity(clock)
    live.event("ns/pool")
    live.tick()
    clock.now += 29
    assert live.verdict().ok
    clock.now += 2
    verdict = live.verdict()
    assert not verdict.ok
    assert "no timer tick" in verdict.reason
    live.gone("ns/pool")
    assert live.verdict().ok


def test_write_that_never_comes_back_means_a_silent_watch() -> None:
    clock = Clock()
    live = activity(clock)
    live.event("ns/pool")
    live.wrote("ns/pool", {"health": "Healthy", "replicas": 2})
    for _ in range(10):  # a silent watch makes every tick rewrite the same status
        clock.now += 7
        live.tick()
        live.wrote("ns/pool", {"health": "Healthy", "replicas": 2})
    verdict = live.verdict()
    assert not verdict.ok
    assert "silent" in verdict.reason


def test_observed_write_clears_the_suspicion() -> None:
    clock = Clock()
    live = activity(clock)
    live.wrote("ns/pool", {"health": "Healthy", "replicas": 2})
    live.observed("ns/pool", {"health": "Degraded", "replicas": 2})
    live.observed("ns/pool", {"health": "Healthy", "replicas": 2, "other": "field"})
    clock.now += 3600
    live.tick()
    assert live.verdict().ok

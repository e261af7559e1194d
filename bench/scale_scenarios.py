"""The workloads of ``make bench-scale`` and what happens around them, the same for every
system. Each driver enqueues its plan (``run_ledger`` sleep jobs: every run written
down), does what the scenario does to the cluster, and returns the moments the figures
are measured from; it never looks at which system sizes the pool.

- burst: 1,000 one-second jobs at once into an idle pool;
- ramp: 100 one-second jobs/s for 30 s;
- scale-in: the burst brings the pool to 20, then for TRICKLE_SECONDS a steady mix
  (20 one-second and 2 thirty-second jobs every second) keeps about 80 jobs in the
  queue: 8 workers' worth, so each system shrinks the pool while every worker holds
  jobs, some of them 30 s long (longer than the 10 s shutdown grace);
- outage: 800 thirty-second jobs bring the pool to 20; once all 20 are Ready, PostgreSQL
  stops for 30 s and starts again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from scale_systems import MAX_REPLICAS, QUEUE, RunSetup, System
from scale_watch import Watched

from workerfleet.worker.connector import Connector
from workerfleet.worker.models import EnqueueRequest
from workerfleet.worker.repository import Repository

SCENARIOS = ("burst", "ramp", "scale-in", "outage")
SHORT_JOB_SECONDS = 1.0
LONG_JOB_SECONDS = 30.0
BURST_JOBS = 1_000
RAMP_RATE_PER_SECOND = 100
RAMP_SECONDS = 30.0
RAMP_TICK_SECONDS = 0.1
TRICKLE_SECONDS = 450
TRICKLE_SHORT_PER_SECOND = 20
TRICKLE_LONG_PER_SECOND = 2
OUTAGE_JOBS = 800
OUTAGE_SECONDS = 30.0
OUTAGE_AFTER_FULL_SECONDS = 10.0
FULL_TIMEOUT_SECONDS = 300.0
SAID_DURING_OUTAGE_SECONDS = 20.0
RECOVER_TIMEOUT_SECONDS = 300.0
EMPTY_TIMEOUT_SECONDS = 1_200.0
QUEUE_POLL_SECONDS = 0.1
WAIT_POLL_SECONDS = 0.1
# KEDA's defaults keep the pool up 300 s after the queue empties and the scale-in run
# lasts minutes: a line this often says the run is alive and where it stands.
PROGRESS_SECONDS = 30.0

# (seconds after the start, jobs, seconds each job sleeps)
Plan = list[tuple[float, int, float]]


def plan_of(scenario: str, trickle_seconds: int = TRICKLE_SECONDS) -> Plan:
    if scenario == "burst":
        return [(0.0, BURST_JOBS, SHORT_JOB_SECONDS)]
    if scenario == "ramp":
        per_tick = round(RAMP_RATE_PER_SECOND * RAMP_TICK_SECONDS)
        ticks = round(RAMP_SECONDS / RAMP_TICK_SECONDS)
        return [(i * RAMP_TICK_SECONDS, per_tick, SHORT_JOB_SECONDS) for i in range(ticks)]
    if scenario == "scale-in":
        plan: Plan = [(0.0, BURST_JOBS, SHORT_JOB_SECONDS)]
        for second in range(1, trickle_seconds + 1):
            plan.append((float(second), TRICKLE_SHORT_PER_SECOND, SHORT_JOB_SECONDS))
            plan.append((float(second), TRICKLE_LONG_PER_SECOND, LONG_JOB_SECONDS))
        return plan
    if scenario == "outage":
        return [(0.0, OUTAGE_JOBS, LONG_JOB_SECONDS)]
    raise ValueError(f"unknown scenario {scenario!r}")


def one_second_plan(scenario: str) -> list[tuple[float, int]]:
    """The plan as keda_model takes it (burst and ramp only: all one-second jobs)."""
    return [(offset, count) for offset, count, _ in plan_of(scenario)]


@dataclass
class Moments:
    """When things happened in one run (monotonic seconds); None: it did not happen."""

    t0: float
    enqueued_until: float
    empty: float | None = None
    at_min: float | None = None
    full: float | None = None
    outage_start: float | None = None
    outage_end: float | None = None
    recovered: float | None = None
    said_during_outage: str | None = None
    notes: list[str] = field(default_factory=list)


async def enqueue(dsn: str, plan: Plan) -> tuple[float, float]:
    """Enqueue as planned; the monotonic times of the first and the last commit."""
    async with await Connector.open(dsn, min_size=1, max_size=1) as connector:
        repository = Repository(connector)
        started = time.monotonic()
        first: float | None = None
        said = started
        for offset, count, seconds in plan:
            delay = started + offset - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.monotonic() - said >= PROGRESS_SECONDS:
                said = time.monotonic()
                progress(f"{offset:.0f}s of {plan[-1][0]:.0f}s enqueued")
            await repository.enqueue_many(
                [EnqueueRequest(QUEUE, "sleep", {"seconds": seconds})] * count
            )
            first = first if first is not None else time.monotonic()
        assert first is not None
        return first, time.monotonic()


async def wait_empty(dsn: str, within: float) -> float:
    """When nothing is pending, scheduled (a retry's backoff) or running any more."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            async with await Connector.open(dsn, min_size=1, max_size=1) as connector:
                repository = Repository(connector)
                while time.monotonic() < deadline:
                    stats = {row.queue: row for row in await repository.queue_stats()}
                    row = stats.get(QUEUE)
                    if row is not None and row.pending + row.scheduled + row.running == 0:
                        return time.monotonic()
                    await asyncio.sleep(QUEUE_POLL_SECONDS)
        await asyncio.sleep(1.0)
    raise TimeoutError(f"the queue did not empty within {within:.0f}s")


def progress(text: str) -> None:
    print(f"    {time.strftime('%H:%M:%S')} {text}", flush=True)


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    waiting_for: str | None = None,
    status: Callable[[], str] | None = None,
) -> float | None:
    """The monotonic time ``check`` first held, or None if it did not within ``timeout``;
    with ``waiting_for``, a progress line every PROGRESS_SECONDS (``status`` appended)."""
    started = time.monotonic()
    deadline = started + timeout
    said = started
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        if waiting_for is not None and time.monotonic() - said >= PROGRESS_SECONDS:
            said = time.monotonic()
            extra = f" ({status()})" if status is not None else ""
            progress(f"{said - started:.0f}s waiting for {waiting_for}{extra}")
        time.sleep(WAIT_POLL_SECONDS)
    return None


def _pool_status(watched: Watched) -> Callable[[], str]:
    return lambda: f"replicas {watched.replicas_now()}, ready {watched.ready_at(time.monotonic())}"


def drive(
    scenario: str,
    setup: RunSetup,
    system: System,
    watched: Watched,
    trickle_seconds: int = TRICKLE_SECONDS,
) -> Moments:
    if scenario == "outage":
        moments = _outage(setup, system, watched)
    else:
        t0, until = asyncio.run(enqueue(setup.dsn, plan_of(scenario, trickle_seconds)))
        moments = Moments(t0, until)
    progress(
        f"enqueued over {moments.enqueued_until - moments.t0:.0f}s; waiting for the queue to empty"
    )
    moments.empty = asyncio.run(wait_empty(setup.dsn, EMPTY_TIMEOUT_SECONDS))
    empty = moments.empty
    progress(
        f"queue empty at {empty - moments.t0:.0f}s; waiting up to "
        f"{system.settle_seconds():.0f}s for 0 replicas"
    )
    moments.at_min = wait_until(
        lambda: watched.replicas_now() == 0 and watched.replicas[-1][0] > empty,
        system.settle_seconds(),
        "0 replicas",
        _pool_status(watched),
    )
    if moments.at_min is None:
        moments.notes.append(
            f"not back at 0 within {system.settle_seconds():.0f}s of the queue emptying"
        )
    return moments


def _outage(setup: RunSetup, system: System, watched: Watched) -> Moments:
    t0, until = asyncio.run(enqueue(setup.dsn, plan_of("outage")))
    moments = Moments(t0, until)
    moments.full = wait_until(
        lambda: watched.ready_at(time.monotonic()) >= MAX_REPLICAS,
        FULL_TIMEOUT_SECONDS,
        f"{MAX_REPLICAS} pods Ready",
        _pool_status(watched),
    )
    if moments.full is None:
        moments.notes.append(f"the pool was not all Ready within {FULL_TIMEOUT_SECONDS:.0f}s")
    time.sleep(OUTAGE_AFTER_FULL_SECONDS)
    moments.outage_start = time.monotonic()
    progress(f"stopping PostgreSQL for {OUTAGE_SECONDS:.0f}s")
    setup.cluster.postgres.stop()
    time.sleep(SAID_DURING_OUTAGE_SECONDS)
    try:
        moments.said_during_outage = system.said()
    except Exception as error:  # what it says is a figure; failing to read it is one too
        moments.said_during_outage = f"could not read: {error}"
    time.sleep(max(moments.outage_start + OUTAGE_SECONDS - time.monotonic(), 0.0))
    setup.cluster.postgres.start()
    moments.outage_end = time.monotonic()
    progress("PostgreSQL started again; waiting for the pool to be back and Ready")
    moments.recovered = wait_until(
        lambda: (
            (watched.replicas_now() or 0) >= 1
            and watched.ready_at(time.monotonic()) >= (watched.replicas_now() or 0)
        ),
        RECOVER_TIMEOUT_SECONDS,
        "the pool back and Ready",
        _pool_status(watched),
    )
    return moments

"""The side-by-side table of ``make bench-scale``: one block per scenario, one column per
system that ran, and KEDA's figures computed from its documented defaults
(keda_model.py) where the model covers the scenario."""

from __future__ import annotations

import statistics
import textwrap
from collections.abc import Callable, Sequence

import keda_model
from scale_runs import Run
from scale_scenarios import (
    BURST_JOBS,
    LONG_JOB_SECONDS,
    OUTAGE_JOBS,
    OUTAGE_SECONDS,
    RAMP_RATE_PER_SECOND,
    RAMP_SECONDS,
    SHORT_JOB_SECONDS,
    TRICKLE_LONG_PER_SECOND,
    TRICKLE_SHORT_PER_SECOND,
    one_second_plan,
)
from scale_systems import CONCURRENCY, JOBS_PER_WORKER, MAX_REPLICAS, SHUTDOWN_GRACE

COMPUTED = "KEDA defaults (computed)"
DEFAULT_POD_START_SECONDS = 10.0
TRICKLE_DEPTH = TRICKLE_SHORT_PER_SECOND + TRICKLE_LONG_PER_SECOND * LONG_JOB_SECONDS
TITLES = {
    "burst": f"{BURST_JOBS:,} one-second jobs at once into an idle pool",
    "ramp": f"{RAMP_RATE_PER_SECOND} one-second jobs/s for {RAMP_SECONDS:g} s",
    "scale-in": (
        f"{BURST_JOBS:,} one-second jobs, then for {{trickle}} s every second "
        f"{TRICKLE_SHORT_PER_SECOND} one-second and {TRICKLE_LONG_PER_SECOND} "
        f"{LONG_JOB_SECONDS:g}-second jobs (about {TRICKLE_DEPTH:.0f} in the queue: "
        f"{MAX_REPLICAS} workers shrink while every one holds jobs)"
    ),
    "outage": (
        f"{OUTAGE_JOBS} {LONG_JOB_SECONDS:g}-second jobs; once {MAX_REPLICAS} pods are Ready, "
        f"PostgreSQL stops for {OUTAGE_SECONDS:g} s"
    ),
}

Row = tuple[str, Callable[[Run], str], str]
"""(label, the cell of a measured run, the cell of the computed column)."""


def seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def peaked(value: float | None, peak: int) -> str:
    return seconds(value) if peak == MAX_REPLICAS else f"{seconds(value)} (peak {peak})"


def count(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _system(run: Run, key: str) -> str:
    value = run.system_figures.get(key)
    return "-" if value is None else f"{value:g}"


def _reaction(run: Run) -> str:
    reaction = run.system_figures.get("reaction")
    if not reaction:
        return "-"

    def fine(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f} s"

    return (
        f"{fine(reaction.get('p50'))} / {fine(reaction.get('p99'))} "
        f"(n={run.system_figures.get('reaction_count', 0):g})"
    )


def _outage(key: str, show: Callable[[object], str]) -> Callable[[Run], str]:
    return lambda run: show(run.outage.get(key)) if run.outage else "-"


def _pair(value: object) -> str:
    if isinstance(value, list) and len(value) == 2:
        low, high = value
        return f"{low}" if low == high else f"{low}-{high}"
    return "-"


def _seconds_of(value: object) -> str:
    return seconds(value) if isinstance(value, int | float) or value is None else "-"


def _number(value: object) -> str:
    return "-" if value is None else str(value)


def rows(scenario: str, computed: keda_model.Computed | None) -> list[Row]:
    def model(figure: Callable[[keda_model.Computed], str]) -> str:
        return "not modelled" if computed is None else figure(computed)

    def model_peaked(figure: keda_model.Figure, peak: int) -> str:
        return figure.text() if peak == MAX_REPLICAS else f"{figure.text()} (peak {peak})"

    ledger: list[Row] = [
        # A worker stopped within its grace period releases the job without counting the
        # attempt, so an interrupted job runs again at the same attempt: counted here.
        ("runs beyond a job's first", lambda r: str(r.extra_runs), model(lambda _: "-")),
        ("jobs run again at a higher attempt", lambda r: str(r.rerun_jobs), model(lambda _: "-")),
        ("runs cut off (never finished)", lambda r: str(r.cut_off_runs), model(lambda _: "-")),
        ("SIGKILLs after the grace period", lambda r: str(r.sigkills), model(lambda _: "-")),
        ("container restarts", lambda r: str(r.restarts), model(lambda _: "-")),
    ]
    ending: list[Row] = [
        ("to the queue empty", lambda r: seconds(r.to_empty), model(lambda c: c.to_empty.text())),
        ("back to min (0)", lambda r: seconds(r.to_min), model(lambda c: c.to_min.text())),
        (
            "pod-seconds (replicas x time)",
            lambda r: count(_round(r.pod_seconds)),
            model(lambda _: "-"),
        ),
    ]
    if scenario in ("burst", "ramp"):
        return [
            ("first replicas change", lambda r: seconds(r.to_first_change), model(lambda _: "-")),
            (
                f"to spec.replicas = {MAX_REPLICAS} (or peak)",
                lambda r: peaked(r.to_peak, r.peak),
                model(lambda c: model_peaked(c.to_peak, c.peak)),
            ),
            (
                f"to {MAX_REPLICAS} pods Ready (or peak)",
                lambda r: peaked(r.to_peak_ready, r.peak),
                model(lambda c: model_peaked(c.to_peak_ready, c.peak)),
            ),
            *ending,
            *ledger,
            ("pod start on this node (median)", lambda r: seconds(r.pod_start_median), "same"),
            ("operator reaction p50 / p99", _reaction, "-"),
            ("drains timed out", lambda r: _system(r, "drains_timed_out"), "-"),
        ]
    if scenario == "scale-in":
        return [
            (
                f"to {MAX_REPLICAS} pods Ready (or peak)",
                lambda r: peaked(r.to_peak_ready, r.peak),
                "not modelled",
            ),
            (
                "lowest spec.replicas under load",
                lambda r: _number(r.lowest_under_load),
                "not modelled",
            ),
            (
                "spec.replicas when the trickle ended",
                lambda r: _number(r.replicas_at_trickle_end),
                "not modelled",
            ),
            *[(label, cell, "not modelled") for label, cell, _ in ledger],
            ("drains timed out", lambda r: _system(r, "drains_timed_out"), "-"),
            *[(label, cell, "not modelled") for label, cell, _ in ending],
        ]
    return [
        (f"to {MAX_REPLICAS} pods Ready", _outage("full_after", _seconds_of), "not modelled"),
        ("spec.replicas before the outage", _outage("replicas_before", _number), "not modelled"),
        ("spec.replicas during the outage", _outage("replicas_during", _pair), "not modelled"),
        (
            "spec.replicas 30 s after PostgreSQL is back",
            _outage("replicas_after_30s", _number),
            "not modelled",
        ),
        ("Ready pods before the outage", _outage("ready_before", _number), "not modelled"),
        ("Ready pods, lowest during", _outage("ready_lowest_during", _number), "not modelled"),
        (
            "all Ready again, after PostgreSQL is back",
            _outage("all_ready_after", _seconds_of),
            "not modelled",
        ),
        (
            "queue empty, after PostgreSQL is back",
            _outage("to_empty_after", _seconds_of),
            "not modelled",
        ),
        *[(label, cell, "not modelled") for label, cell, _ in ledger],
        ("back to min (0)", lambda r: seconds(r.to_min), "not modelled"),
    ]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value)


def computed_for(scenario: str, runs: Sequence[Run]) -> keda_model.Computed | None:
    if scenario not in ("burst", "ramp"):
        return None
    starts = [r.pod_start_median for r in runs if r.pod_start_median is not None]
    start = statistics.median(starts) if starts else DEFAULT_POD_START_SECONDS
    work = keda_model.Workload(
        one_second_plan(scenario),
        SHORT_JOB_SECONDS,
        CONCURRENCY,
        JOBS_PER_WORKER,
        MAX_REPLICAS,
        start,
    )
    return keda_model.computed(work)


def print_scenario(scenario: str, runs: Sequence[Run], delay: str, trickle_seconds: int) -> None:
    computed = computed_for(scenario, runs)
    print(
        f"\n{scenario}: {TITLES[scenario].format(trickle=trickle_seconds)}\n"
        f"  min 0, max {MAX_REPLICAS}, jobsPerWorker / "
        f"targetQueryValue {JOBS_PER_WORKER}, concurrency {CONCURRENCY}, shutdownGracePeriod "
        f"{SHUTDOWN_GRACE}; workerfleet scaleDownDelay {delay}"
    )
    headers = [r.system for r in runs] + [COMPUTED]
    table = [
        (label, [("failed" if r.error else cell(r)) for r in runs] + [model])
        for label, cell, model in rows(scenario, computed)
    ]
    widths = [max(len(h), *(len(cells[i]) for _, cells in table)) for i, h in enumerate(headers)]
    label_width = max(len(label) for label, _ in table)
    print(
        " " * label_width
        + "  "
        + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    )
    for label, cells in table:
        print(
            label.ljust(label_width)
            + "  "
            + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
        )
    for run in runs:
        said = run.outage.get("said_during") if run.outage else None
        if said:
            print(
                textwrap.fill(
                    f"{run.system} said during the outage: {said}", 100, subsequent_indent="    "
                )
            )
        for note in ([run.error] if run.error else []) + run.notes:
            print(textwrap.fill(f"{run.system}: {note}", 100, subsequent_indent="    "))


def print_table(
    runs: Sequence[Run], delay: str, trickle_seconds: int, keda_missing: str | None
) -> None:
    for scenario in dict.fromkeys(r.scenario for r in runs):
        scenario_runs = [r for r in runs if r.scenario == scenario]
        print_scenario(scenario, scenario_runs, delay, trickle_seconds)
    print(
        f"\n{COMPUTED}: keda_model.py, from KEDA's documented defaults (pollingInterval 30 s, "
        "HPA sync 15 s, scale-up max(4 pods, 100%) per 15 s, scale-down stabilization 300 s, "
        "cooldown 300 s), mean over the poll and sync phases (best-worst), paying the pod "
        "start measured here; not a KEDA run."
    )
    if keda_missing:
        print(f"Real KEDA not run: {keda_missing}")

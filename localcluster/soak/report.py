"""The soak's figures, from what the database and the watcher recorded (pure)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

# How a job went back to the queue, by the start of the error the release wrote.
PATHS = (
    ("worker ", "died", "the operator saw its container end or restart"),
    ("worker ", "stopped heartbeating", "the Monitor reaped the silent worker"),
    ("lease expired", "", "its lease expired (Monitor or the workers' fallback rescue)"),
)


@dataclass(frozen=True)
class WorkerRow:
    id: str
    pod: str | None
    started_at: float


@dataclass(frozen=True)
class Kill:
    at: float
    pod: str
    signal: str = "SIGKILL"
    worker_id: str | None = None


@dataclass(frozen=True)
class TakenBack:
    """A job that left ``running`` for pending (or dead) while a worker held it."""

    job_id: int
    worker_id: str
    at: float
    why: str
    ran_again: float | None


@dataclass(frozen=True)
class Recovery:
    kill: Kill
    job_id: int
    to_pending: float
    to_running: float | None
    path: str


@dataclass(frozen=True)
class StatusChange:
    at: float
    health: str
    ready: int | None
    desired: int | None
    degraded: str


@dataclass(frozen=True)
class Outage:
    """A component restarting: from the stop until it served again."""

    began: float
    ended: float
    what: str


# A kill this soon after an outage ended still meets its after-effects (watches
# reconnecting, pools refilling).
OUTAGE_TAIL_SECONDS = 2.0


@dataclass
class Findings:
    states: Mapping[str, int]
    completed_twice: int
    executions: Mapping[int, int]
    """Handler executions per job -> how many jobs ran that often."""
    recoveries: list[Recovery]
    kills: list[Kill]
    history: list[StatusChange] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)
    outages: list[Outage] = field(default_factory=list)

    def outage_at(self, moment: float) -> Outage | None:
        for outage in self.outages:
            if outage.began <= moment <= outage.ended + OUTAGE_TAIL_SECONDS:
                return outage
        return None

    @property
    def total(self) -> int:
        return sum(self.states.values())

    @property
    def lost(self) -> int:
        return self.total - self.states.get("succeeded", 0)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.completed_twice == 0


def incarnation_at(pod: str, moment: float, rows: Iterable[WorkerRow]) -> str | None:
    """The worker that ran in ``pod`` at ``moment``: the newest registered before it."""
    before = [r for r in rows if r.pod == pod and r.started_at <= moment]
    return max(before, key=lambda r: r.started_at).id if before else None


def path_of(why: str) -> str:
    for prefix, word, path in PATHS:
        if why.startswith(prefix) and word in why:
            return path
    return "other"


def recoveries(kills: Sequence[Kill], taken: Iterable[TakenBack]) -> list[Recovery]:
    """Each job taken back from a killed incarnation, timed from its kill."""
    by_worker = {k.worker_id: k for k in kills if k.worker_id is not None}
    found = []
    for job in taken:
        kill = by_worker.get(job.worker_id)
        if kill is None or job.at < kill.at:
            continue
        ran = None if job.ran_again is None else job.ran_again - kill.at
        found.append(Recovery(kill, job.job_id, job.at - kill.at, ran, path_of(job.why)))
    return found


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` in 0..1) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def spread(values: Sequence[float]) -> str:
    if not values:
        return "no samples"
    return (
        f"p50 {percentile(values, 0.5):.2f} s, p99 {percentile(values, 0.99):.2f} s, "
        f"max {max(values):.2f} s ({len(values)} jobs)"
    )


def format_report(findings: Findings, started: float) -> str:
    lines = ["", "== soak report"]
    states = ", ".join(f"{n} {s}" for s, n in sorted(findings.states.items()))
    lines.append(f"jobs: {findings.total} ({states})")
    lines.append(f"jobs lost (not succeeded): {findings.lost}")
    lines.append(f"jobs completed twice: {findings.completed_twice}")
    runs = ", ".join(f"{runs}x: {jobs}" for runs, jobs in sorted(findings.executions.items()))
    lines.append(f"handler executions per job: {runs}")
    for signal in sorted({k.signal for k in findings.kills}):
        kills = [k for k in findings.kills if k.signal == signal]
        of_these = [r for r in findings.recoveries if r.kill.signal == signal]
        lines.append(f"{signal}: {len(kills)} workers, {len(of_these)} of their jobs taken back")
        calm = [r for r in of_these if findings.outage_at(r.kill.at) is None]
        for label, sample in (
            ("all kills", of_these),
            ("kills with the operator, PostgreSQL and the API server up", calm),
        ):
            if len(sample) == len(of_these) and sample is not of_these:
                continue
            pending = [r.to_pending for r in sample]
            running = [r.to_running for r in sample if r.to_running is not None]
            lines.append(f"  {label}:")
            lines.append(f"    -> pending again: {spread(pending)}")
            lines.append(f"    -> running again: {spread(running)}")
        for path in sorted({r.path for r in of_these}):
            count = sum(1 for r in of_these if r.path == path)
            lines.append(f"  {count} jobs: {path}")
    lines.append("faults:")
    for at, what in findings.events:
        lines.append(f"  {at - started:7.1f} s  {what}")
    lines.append("pool status history:")
    for change in findings.history:
        lines.append(
            f"  {change.at - started:7.1f} s  {change.health:<12} ready {change.ready}/"
            f"{change.desired}  {change.degraded}"
        )
    lines.append("result: " + ("OK" if findings.ok else "FAILED"))
    return "\n".join(lines)

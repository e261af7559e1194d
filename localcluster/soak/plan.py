"""What a soak does and when (pure)."""

from __future__ import annotations

from dataclasses import dataclass

KILL = "kill"
HANG = "hang"
RESTART_OPERATOR = "restart-operator"
RESTART_POSTGRES = "restart-postgres"
RESTART_APISERVER = "restart-apiserver"
# When the one-off faults strike, as fractions of the chaos window.
ONE_OFF_AT = {
    HANG: 0.1,
    RESTART_OPERATOR: 0.3,
    RESTART_POSTGRES: 0.5,
    RESTART_APISERVER: 0.7,
}


@dataclass(frozen=True)
class Plan:
    jobs: int = 20_000
    seconds: float = 300.0
    """The chaos window: jobs arrive evenly over it, faults strike within it."""
    workers: int = 6
    concurrency: int = 8
    job_seconds: float = 0.3
    """How long each job's handler runs (after recording its execution)."""
    kill_every: float = 5.0
    drain_timeout: float = 600.0
    """How long the queue may take to drain after the window."""
    max_attempts: int = 25
    """Generous: every kill costs the jobs it held an attempt, and none may be lost to it."""
    one_off_faults: bool = True
    """The hung worker and the restarts of the operator, PostgreSQL and the API server."""

    @classmethod
    def short(cls) -> Plan:
        """The CI form: 2,000 jobs in a minute."""
        return cls(jobs=2_000, seconds=60.0, workers=4, drain_timeout=240.0)

    @classmethod
    def recovery(cls) -> Plan:
        """Kills alone, while the workers have free slots: how fast a killed worker's jobs
        are pending and running again. Each pod is killed about every 75 s, so it has run
        long enough between kills for its crash-loop back-off to start over."""
        return cls(
            jobs=4_800,
            seconds=600.0,
            workers=5,
            concurrency=8,
            job_seconds=2.0,
            kill_every=15.0,
            one_off_faults=False,
        )

    @property
    def jobs_per_second(self) -> float:
        return self.jobs / self.seconds


@dataclass(frozen=True)
class Fault:
    at: float
    """Seconds into the chaos window."""
    kind: str


def schedule(plan: Plan) -> list[Fault]:
    """Every fault of the window in order: a kill every ``kill_every`` seconds, and each
    one-off fault once."""
    faults = [
        Fault(fraction * plan.seconds, kind)
        for kind, fraction in ONE_OFF_AT.items()
        if plan.one_off_faults
    ]
    at = plan.kill_every
    while at < plan.seconds:
        faults.append(Fault(at, KILL))
        at += plan.kill_every
    return sorted(faults, key=lambda f: (f.at, f.kind != KILL))

"""Alert rules and the incidents they open, keep and resolve: pure functions.

:func:`evaluate` takes the Monitor's rules, the facts of the pools it selects
(their queue and worker stats from the one stats query per database), the
names of every pool in its namespace, the incidents of the last run and
``now``; it returns the incidents after this run and the changes to tell
people about. Nothing here reads a clock, a database or the cluster.

One (rule, pool) has at most one active incident:

* **pending**: the rule's condition holds, its ``for`` has not elapsed yet;
  a break in the condition drops it (the next one starts afresh);
* **firing**: the condition held for ``for``; notified once when it fires,
  again every ``repeatInterval`` if set;
* **resolved**: the condition stopped holding (or the rule was disabled, or
  the pool deleted or no longer selected); notified once, kept in the list
  for ``RESOLVED_KEEP_SECONDS``.

A pool whose stats could not be read this run keeps its incidents as they
are: an unreachable database neither fires nor resolves anything.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

import pydantic

from workerfleet.durations import format_duration
from workerfleet.operator import conditions, models
from workerfleet.worker.models import QueueStats, WorkerStats

RESOLVED_KEEP_SECONDS = 24 * 3600.0
# Pending and firing incidents share this bound with nothing: resolved ones make room.
MAX_ACTIVE_INCIDENTS = models.MAX_INCIDENTS

IncidentState = Literal["pending", "firing", "resolved"]
ChangeKind = Literal["fired", "resolved", "repeated"]


@dataclass(frozen=True)
class PoolFacts:
    """What the rules know about one selected pool at one run.

    ``queue`` and ``workers`` are None when the pool's database could not be
    read this run; a readable queue without rows has all-zero stats.
    """

    name: str
    queue: QueueStats | None
    workers: WorkerStats | None
    concurrency: int | None
    """spec.worker.concurrency: jobs one worker runs at once (None: its spec does not parse)."""
    ceiling: int | None
    """Most workers the pool may run now: replicas.override if set, else replicas.max (None:
    its spec does not parse)."""


@dataclass(frozen=True)
class Incident:
    rule: str
    pool: str
    state: IncidentState
    since: datetime
    """When the condition started holding."""
    message: str
    value: int | None = None
    first_value: int | None = None
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    notified_at: datetime | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.rule, self.pool)

    @property
    def active(self) -> bool:
        return self.state != "resolved"

    @property
    def latest(self) -> datetime:
        """Its last change of state: what "newest first" orders by."""
        return self.resolved_at or self.fired_at or self.since


@dataclass(frozen=True)
class Change:
    """Something to tell people: an incident fired, resolved, or is still firing."""

    kind: ChangeKind
    incident: Incident


@dataclass(frozen=True)
class Evaluation:
    incidents: tuple[Incident, ...]
    """Every incident after this run, newest first, bounded."""
    changes: tuple[Change, ...]

    @property
    def firing(self) -> tuple[Incident, ...]:
        return tuple(i for i in self.incidents if i.state == "firing")


@dataclass(frozen=True)
class Check:
    """One rule's verdict on one pool: whether its condition holds, in words and a figure."""

    holds: bool
    message: str
    value: int
    may_fire: bool = True
    """False while the condition holds but must not fire yet whatever ``for`` says."""


RuleCheck = Callable[[PoolFacts, Any, Incident | None], Check | None]


@dataclass(frozen=True)
class RuleDefinition:
    name: str
    """The rule's name in spec.rules and in status.incidents."""
    settings: Callable[[models.MonitorRules], models.AlertRule]
    check: RuleCheck
    """(facts, the rule's settings, the active incident or None) -> Check, or None when
    the facts cannot tell (the incident then stays as it is)."""


def _queue(facts: PoolFacts) -> QueueStats:
    assert facts.queue is not None  # evaluate() checks only pools that were read
    return facts.queue


def _workers(facts: PoolFacts) -> WorkerStats:
    assert facts.workers is not None
    return facts.workers


def check_no_workers_with_pending(
    facts: PoolFacts, rule: models.NoWorkersWithPendingRule, active: Incident | None
) -> Check:
    pending, online = _queue(facts).pending, _workers(facts).online
    return Check(
        holds=pending > 0 and online == 0,
        message=f"{pending} jobs ready to run, {online} workers online",
        value=pending,
    )


def check_failed_jobs(
    facts: PoolFacts, rule: models.FailedJobsRule, active: Incident | None
) -> Check:
    failed = _queue(facts).failed_within(rule.window_minutes)
    return Check(
        holds=failed >= rule.threshold,
        message=f"{failed} failed attempts in the last {rule.window} (threshold {rule.threshold})",
        value=failed,
    )


def check_dead_jobs(facts: PoolFacts, rule: models.DeadJobsRule, active: Incident | None) -> Check:
    dead = _queue(facts).dead_within(rule.window_minutes)
    return Check(
        holds=dead >= rule.threshold,
        message=f"{dead} jobs dead-lettered in the last {rule.window} (threshold {rule.threshold})",
        value=dead,
    )


def check_oldest_pending(
    facts: PoolFacts, rule: models.OldestPendingRule, active: Incident | None
) -> Check:
    waited = _queue(facts).oldest_pending_seconds or 0.0
    words = format_duration(waited) if waited else "no job"
    return Check(
        holds=waited > rule.threshold_seconds,
        message=f"the oldest ready job has waited {words} (threshold {rule.threshold})",
        value=int(waited),
    )


def check_running_exceeds_capacity(
    facts: PoolFacts, rule: models.RunningExceedsCapacityRule, active: Incident | None
) -> Check | None:
    if facts.concurrency is None:
        return None
    workers = _workers(facts)
    capacity = (workers.online + workers.draining) * facts.concurrency
    return Check(
        holds=workers.running_jobs > capacity,
        message=f"{workers.running_jobs} jobs running on workers with room for {capacity} "
        f"({workers.online} online and {workers.draining} draining, "
        f"concurrency {facts.concurrency})",
        value=workers.running_jobs,
    )


def check_queue_growing(
    facts: PoolFacts, rule: models.QueueGrowingRule, active: Incident | None
) -> Check | None:
    if facts.ceiling is None:
        return None
    pending, online = _queue(facts).pending, _workers(facts).online
    at_ceiling = facts.ceiling > 0 and online >= facts.ceiling
    previous = active.value if active is not None and active.value is not None else pending
    first = active.first_value if active is not None and active.first_value is not None else pending
    return Check(
        holds=at_ceiling and pending > 0 and pending >= previous,
        message=f"{pending} jobs ready to run (was {first}), {online} of at most "
        f"{facts.ceiling} workers online",
        value=pending,
        may_fire=pending > first,
    )


RULES: tuple[RuleDefinition, ...] = (
    RuleDefinition(
        "noWorkersWithPending", lambda r: r.no_workers_with_pending, check_no_workers_with_pending
    ),
    RuleDefinition("failedJobs", lambda r: r.failed_jobs, check_failed_jobs),
    RuleDefinition("deadJobs", lambda r: r.dead_jobs, check_dead_jobs),
    RuleDefinition("oldestPending", lambda r: r.oldest_pending, check_oldest_pending),
    RuleDefinition(
        "runningExceedsCapacity",
        lambda r: r.running_exceeds_capacity,
        check_running_exceeds_capacity,
    ),
    RuleDefinition("queueGrowing", lambda r: r.queue_growing, check_queue_growing),
)
RULES_BY_NAME = {rule.name: rule for rule in RULES}


class _Run:
    """The bookkeeping of one evaluation."""

    def __init__(self, now: datetime, repeat_seconds: float | None) -> None:
        self.now = now
        self.repeat_seconds = repeat_seconds
        self.active: dict[tuple[str, str], Incident] = {}
        self.resolved: list[Incident] = []
        self.changes: list[Change] = []

    def close(self, incident: Incident, message: str) -> None:
        """The condition no longer holds: a firing incident resolves, a pending one is dropped."""
        if incident.state != "firing":
            return
        done = replace(
            incident,
            state="resolved",
            message=message,
            resolved_at=self.now,
            notified_at=self.now,
        )
        self.resolved.append(done)
        self.changes.append(Change("resolved", done))

    def hold(
        self,
        current: Incident | None,
        rule: RuleDefinition,
        pool: str,
        check: Check,
        hold_for_seconds: float,
    ) -> None:
        """The condition holds: open, keep, fire or repeat."""
        if current is None:
            current = Incident(
                rule=rule.name,
                pool=pool,
                state="pending",
                since=self.now,
                message=check.message,
                value=check.value,
                first_value=check.value,
            )
        else:
            current = replace(current, message=check.message, value=check.value)
        if current.state == "pending":
            held = (self.now - current.since).total_seconds()
            if held >= hold_for_seconds and check.may_fire:
                current = replace(current, state="firing", fired_at=self.now, notified_at=self.now)
                self.changes.append(Change("fired", current))
        elif self._repeat_due(current):
            current = replace(current, notified_at=self.now)
            self.changes.append(Change("repeated", current))
        self.active[current.key] = current

    def _repeat_due(self, incident: Incident) -> bool:
        if self.repeat_seconds is None or incident.notified_at is None:
            return False
        return (self.now - incident.notified_at).total_seconds() >= self.repeat_seconds


def evaluate(
    rules: models.MonitorRules,
    pools: Sequence[PoolFacts],
    existing_pools: Collection[str],
    previous: Sequence[Incident],
    now: datetime,
    repeat_seconds: float | None = None,
) -> Evaluation:
    """The incidents after one run of the Monitor, and what changed (see the module doc)."""
    run = _Run(now, repeat_seconds)
    selected = {facts.name: facts for facts in pools}
    earlier = {i.key: i for i in previous if i.active}
    for key, incident in sorted(earlier.items()):
        definition = RULES_BY_NAME.get(incident.rule)
        facts = selected.get(incident.pool)
        if facts is None:
            gone = incident.pool not in existing_pools
            run.close(
                incident,
                "the WorkerPool was deleted"
                if gone
                else "the WorkerPool is no longer selected by this Monitor",
            )
        elif definition is None or not definition.settings(rules).enabled:
            run.close(incident, f"the rule {incident.rule} is disabled")
        elif facts.queue is None or facts.workers is None:
            run.active[key] = incident  # unknown this run: neither fire nor resolve
        else:
            _apply(run, definition, rules, facts, incident)
    for facts in sorted(pools, key=lambda f: f.name):
        if facts.queue is None or facts.workers is None:
            continue
        for definition in RULES:
            if (definition.name, facts.name) in earlier:
                continue
            if not definition.settings(rules).enabled:
                continue
            if len(run.active) >= MAX_ACTIVE_INCIDENTS:
                break  # no room: it is looked at again next run
            _apply(run, definition, rules, facts, None)
    kept = [
        incident
        for incident in previous
        if incident.state == "resolved"
        and incident.resolved_at is not None
        and (now - incident.resolved_at).total_seconds() < RESOLVED_KEEP_SECONDS
    ]
    everything = sorted(
        [*run.active.values(), *run.resolved, *kept], key=lambda i: i.latest, reverse=True
    )
    room = models.MAX_INCIDENTS - len(run.active)
    bounded = [i for i in everything if i.active] + [i for i in everything if not i.active][:room]
    bounded.sort(key=lambda i: i.latest, reverse=True)
    return Evaluation(incidents=tuple(bounded), changes=tuple(run.changes))


def _apply(
    run: _Run,
    definition: RuleDefinition,
    rules: models.MonitorRules,
    facts: PoolFacts,
    current: Incident | None,
) -> None:
    settings = definition.settings(rules)
    check = definition.check(facts, settings, current)
    if check is None:
        if current is not None:
            run.active[current.key] = current  # cannot tell: neither fire nor resolve
        return
    if check.holds:
        run.hold(current, definition, facts.name, check, settings.hold_for_seconds)
    elif current is not None:
        run.close(current, check.message)


# -- status <-> incidents -------------------------------------------------------------------------


def _time(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def from_status(items: Sequence[Mapping[str, Any]] | None) -> list[Incident]:
    """The incidents stored in status.incidents; an entry that does not parse is skipped."""
    found = []
    for item in items or ():
        try:
            stored = models.Incident.model_validate(dict(item))
            since = _time(stored.since)
        except (pydantic.ValidationError, ValueError):
            continue
        assert since is not None
        found.append(
            Incident(
                rule=stored.rule,
                pool=stored.pool,
                state=stored.state,
                since=since,
                message=stored.message,
                value=stored.value,
                first_value=stored.first_value,
                fired_at=_time(stored.fired_at),
                resolved_at=_time(stored.resolved_at),
                notified_at=_time(stored.notified_at),
            )
        )
    return found


def to_status(incident: Incident) -> dict[str, Any]:
    stamp = conditions.rfc3339
    stored = models.Incident(
        rule=incident.rule,
        pool=incident.pool,
        state=incident.state,
        since=stamp(incident.since),
        fired_at=stamp(incident.fired_at) if incident.fired_at else None,
        resolved_at=stamp(incident.resolved_at) if incident.resolved_at else None,
        notified_at=stamp(incident.notified_at) if incident.notified_at else None,
        message=incident.message[: models.MAX_STRING_LENGTH],
        value=incident.value,
        first_value=incident.first_value,
    )
    return stored.model_dump(by_alias=True, exclude_none=True)

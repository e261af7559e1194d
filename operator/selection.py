"""Which WorkerPools a Monitor selects, and which Monitor recovers each pool; pure.

Several Monitors may select the same pool: each evaluates its own rules and
sends its own alerts about it, but only the first of them by name recovers it
(rescues its expired leases, reaps its dead workers, prunes its finished
jobs, restarts its hung pods). Recovery settings of two Monitors never mix,
and a pool is never recovered twice in one round; the database's recovery
lock makes any overlap harmless anyway.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pydantic

from workerfleet.operator import builders, models


@dataclass(frozen=True)
class PoolRef:
    """What a Monitor needs to know about a WorkerPool (kept current by a kopf index)."""

    name: str
    labels: Mapping[str, str]
    secret_name: str
    secret_key: str
    uid: str = ""
    queue: str = ""
    concurrency: int | None = None
    """spec.worker.concurrency (None: the spec does not parse)."""
    ceiling: int | None = None
    """Most workers it may run now: replicas.override if set, else replicas.max (None: the
    spec does not parse)."""

    def key(self, namespace: str) -> str:
        """The pool's name in the workers table."""
        return builders.pool_key(namespace, self.name)

    @classmethod
    def from_spec(
        cls, name: str, uid: str, labels: Mapping[str, str], spec: Mapping[str, Any]
    ) -> PoolRef:
        """From a WorkerPool's spec as stored; a spec that does not parse still names its
        Secret and queue (recovery needs no more), without the figures of its workers."""
        secret = (spec.get("database") or {}).get("secretRef") or {}
        ref = cls(
            name=name,
            labels=dict(labels),
            secret_name=str(secret.get("name", "")),
            secret_key=str(secret.get("key", "dsn")),
            uid=uid,
            queue=str(spec.get("queue", "")),
        )
        try:
            parsed = models.WorkerPoolSpec.model_validate(dict(spec))
        except pydantic.ValidationError:
            return ref
        override = parsed.replicas.override
        return replace(
            ref,
            concurrency=parsed.worker.concurrency,
            ceiling=parsed.replicas.max if override is None else override,
        )


@dataclass(frozen=True)
class MonitorRef:
    """A Monitor whose spec parses: its name and selector."""

    name: str
    selector: models.LabelSelector = field(default_factory=models.LabelSelector)


def selector_matches(selector: models.LabelSelector, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics; an empty selector matches everything."""
    if any(labels.get(key) != value for key, value in selector.match_labels.items()):
        return False
    for requirement in selector.match_expressions:
        present = requirement.key in labels
        value = labels.get(requirement.key)
        matched = {
            "In": present and value in requirement.values,
            "NotIn": not present or value not in requirement.values,
            "Exists": present,
            "DoesNotExist": not present,
        }[requirement.operator]
        if not matched:
            return False
    return True


def selected_pools(selector: models.LabelSelector, pools: Sequence[PoolRef]) -> list[PoolRef]:
    return sorted((p for p in pools if selector_matches(selector, p.labels)), key=lambda p: p.name)


def recovery_owner(pool: PoolRef, monitors: Iterable[MonitorRef]) -> str | None:
    """The Monitor that recovers ``pool``: the first by name of those selecting it."""
    names = sorted(m.name for m in monitors if selector_matches(m.selector, pool.labels))
    return names[0] if names else None


def pools_to_recover(
    me: MonitorRef, pools: Sequence[PoolRef], others: Iterable[MonitorRef]
) -> tuple[list[PoolRef], dict[str, str]]:
    """Of the pools ``me`` selects, those it recovers, and the others' recovering Monitor.

    ``others`` is what the operator knows of the namespace's Monitors; ``me``
    counts whether or not it is among them yet.
    """
    monitors = {m.name: m for m in others}
    monitors[me.name] = me
    mine: list[PoolRef] = []
    elsewhere: dict[str, str] = {}
    for pool in pools:
        owner = recovery_owner(pool, monitors.values())
        if owner == me.name:
            mine.append(pool)
        elif owner is not None:
            elsewhere[pool.name] = owner
    return mine, elsewhere

"""Small frozen views of the Kubernetes objects the operator watches.

The index handlers keep these instead of whole bodies: less memory, and the
rollup gets plain values it can be unit-tested with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from workerfleet.operator import builders
from workerfleet.operator.incarnations import PodLife, pod_life

# The ReplicaSet controller deletes pods with a lower value first (among equally ready ones).
DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
TEMPLATE_HASH_LABEL = "pod-template-hash"


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _deletion_cost(annotations: Mapping[str, Any]) -> int | None:
    try:
        return int(annotations[DELETION_COST_ANNOTATION])
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True)
class PodView:
    name: str
    ready: bool
    restarts: int
    created_at: datetime | None
    deleting: bool
    phase: str
    life: PodLife | None = None
    """Its uid and worker container's life: which worker incarnation it runs."""
    node_name: str | None = None
    deletion_cost: int | None = None
    """The pod-deletion-cost annotation (None: absent or not a number)."""
    template_hash: str | None = None
    """The ReplicaSet it belongs to (pod-template-hash label)."""

    @classmethod
    def from_body(
        cls,
        meta: Mapping[str, Any],
        status: Mapping[str, Any],
        spec: Mapping[str, Any] | None = None,
    ) -> PodView:
        conditions = status.get("conditions") or []
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        containers = status.get("containerStatuses") or []
        restarts = sum(int(c.get("restartCount") or 0) for c in containers)
        return cls(
            name=str(meta.get("name", "")),
            ready=ready,
            restarts=restarts,
            created_at=parse_time(meta.get("creationTimestamp")),
            deleting=meta.get("deletionTimestamp") is not None,
            phase=str(status.get("phase") or "Unknown"),
            life=pod_life(meta, status),
            node_name=(spec or {}).get("nodeName") or None,
            deletion_cost=_deletion_cost(meta.get("annotations") or {}),
            template_hash=(meta.get("labels") or {}).get(TEMPLATE_HASH_LABEL),
        )


@dataclass(frozen=True)
class DeploymentView:
    name: str
    uid: str
    generation: int
    spec_hash: str | None
    replicas: int | None
    ready_replicas: int
    updated_replicas: int
    observed_generation: int | None

    @classmethod
    def from_body(
        cls, meta: Mapping[str, Any], spec: Mapping[str, Any], status: Mapping[str, Any]
    ) -> DeploymentView:
        annotations = meta.get("annotations") or {}
        return cls(
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid", "")),
            generation=int(meta.get("generation") or 0),
            spec_hash=annotations.get(builders.SPEC_HASH_ANNOTATION),
            replicas=spec.get("replicas"),
            ready_replicas=int(status.get("readyReplicas") or 0),
            updated_replicas=int(status.get("updatedReplicas") or 0),
            observed_generation=status.get("observedGeneration"),
        )


@dataclass(frozen=True)
class ServiceView:
    name: str
    uid: str
    spec_hash: str | None

    @classmethod
    def from_body(cls, meta: Mapping[str, Any]) -> ServiceView:
        annotations = meta.get("annotations") or {}
        return cls(
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid", "")),
            spec_hash=annotations.get(builders.SPEC_HASH_ANNOTATION),
        )


def owning_pool(meta: Mapping[str, Any]) -> str | None:
    """The pool a child belongs to, by its pool label."""
    labels = meta.get("labels") or {}
    pool = labels.get(builders.LABEL_POOL)
    return pool if isinstance(pool, str) else None

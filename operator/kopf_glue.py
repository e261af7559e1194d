"""What the kopf handler modules share: the resources they watch, the memo, Events.

kopf hands every handler loosely typed keyword arguments (a ``memo`` of any
shape, a ``namespace`` that may be None, indexes injected by name). The helpers
here turn them into the operator's own types, once, for ``handlers.py``
(WorkerPools) and ``monitor.py`` (Monitors) alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import kopf

from workerfleet.operator import metrics, models
from workerfleet.operator.runtime import Runtime

WORKERPOOLS = (models.GROUP, models.VERSION, models.WORKERPOOL_PLURAL)
MONITORS = (models.GROUP, models.VERSION, models.MONITOR_PLURAL)
# kopf injects its indexes by name; the default only satisfies the handler protocols.
NO_INDEX: Mapping[Any, Any] = MappingProxyType({})


def in_namespace(namespace: str | None) -> str:
    """WorkerPools and Monitors are namespaced: kopf always passes their namespace."""
    if namespace is None:
        raise kopf.PermanentError("a namespaced object arrived without a namespace")
    return namespace


def runtime_of(memo: Any) -> Runtime:
    """The operator's one :class:`Runtime`, which ``main.run`` put into kopf's memo."""
    found: Runtime = memo.runtime
    return found


def post(body: Any, kind: str, reason: str, message: str) -> None:
    """A Kubernetes Event on ``body``, counted; none on an object being deleted."""
    if body.get("metadata", {}).get("deletionTimestamp"):
        return  # its namespace may be going too, and refuses new Events
    kopf.event(body, type=kind, reason=reason, message=message)
    metrics.EVENTS.labels(type=kind, reason=reason).inc()

"""What a KEDA user writes to scale workerfleet workers from the queue: a
TriggerAuthentication for the database DSN and a ScaledObject with KEDA's ``postgresql``
trigger whose query is the depth workerfleet's own policy scales on (ready pending +
running; operator/scaling.py). Pure builders.

Two tunings: KEDA's defaults (nothing set: pollingInterval 30 s, cooldownPeriod 300 s,
the HPA's default behaviour), and what KEDA's docs suggest for fast reaction
(pollingInterval 1 s and a scale-up policy without a limit: up to the maximum at once).
The HPA controller's own sync period (15 s) is the cluster's and stays.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

API_VERSION = "keda.sh/v1alpha1"
SCALED_OBJECT_NAME_LABEL = "scaledobject.keda.sh/name"
# KEDA's trigger takes a query, not parameters: the queue name is written into it, and
# only names that need no quoting are accepted.
QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")
# Ready pending (run_at reached) + running, as the workerfleet policy counts depth.
DEPTH_QUERY = (
    "SELECT count(*) FROM workerfleet.jobs WHERE queue = '{queue}' "
    "AND (state = 'running' OR (state = 'pending' AND run_at <= now()))"
)
FAST_POLLING_INTERVAL_SECONDS = 1
FAST_SCALE_UP_PERIOD_SECONDS = 1


@dataclass(frozen=True)
class Tuning:
    """What a ScaledObject sets beyond its trigger (None: KEDA's default)."""

    label: str
    polling_interval: int | None = None
    scale_up_unlimited: bool = False


DEFAULTS = Tuning("KEDA defaults")
FAST = Tuning("KEDA fast", FAST_POLLING_INTERVAL_SECONDS, scale_up_unlimited=True)


def depth_query(queue: str) -> str:
    if not QUEUE_NAME.match(queue):
        raise ValueError(
            f"queue {queue!r}: only letters, digits and _ . : - can go into KEDA's query"
        )
    return DEPTH_QUERY.format(queue=queue)


def hpa_name(scaled_object: str) -> str:
    """The HPA KEDA creates for a ScaledObject."""
    return f"keda-hpa-{scaled_object}"


def external_metric_name(trigger_index: int = 0) -> str:
    """The external metric KEDA serves for the postgresql trigger at ``trigger_index``."""
    return f"s{trigger_index}-postgresql"


def trigger_authentication(namespace: str, name: str, secret: str, key: str) -> dict[str, Any]:
    """The trigger's ``connection`` (a libpq DSN or URL) from a Secret."""
    return {
        "apiVersion": API_VERSION,
        "kind": "TriggerAuthentication",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"secretTargetRef": [{"parameter": "connection", "name": secret, "key": key}]},
    }


def scaled_object(
    namespace: str,
    name: str,
    deployment: str,
    queue: str,
    jobs_per_worker: int,
    replicas: tuple[int, int],
    authentication: str,
    tuning: Tuning = DEFAULTS,
) -> dict[str, Any]:
    """A ScaledObject sizing ``deployment`` to ceil(depth / jobs_per_worker) within
    ``replicas`` (min, max); it activates from zero as soon as depth > 0."""
    minimum, maximum = replicas
    spec: dict[str, Any] = {
        "scaleTargetRef": {"name": deployment},
        "minReplicaCount": minimum,
        "maxReplicaCount": maximum,
        "triggers": [
            {
                "type": "postgresql",
                "metadata": {
                    "query": depth_query(queue),
                    "targetQueryValue": str(jobs_per_worker),
                    "activationTargetQueryValue": "0",
                },
                "authenticationRef": {"name": authentication},
            }
        ],
    }
    if tuning.polling_interval is not None:
        spec["pollingInterval"] = tuning.polling_interval
    if tuning.scale_up_unlimited:
        spec["advanced"] = {
            "horizontalPodAutoscalerConfig": {
                "behavior": {
                    "scaleUp": {
                        "stabilizationWindowSeconds": 0,
                        "policies": [
                            {
                                "type": "Pods",
                                "value": maximum,
                                "periodSeconds": FAST_SCALE_UP_PERIOD_SECONDS,
                            }
                        ],
                    }
                }
            }
        }
    return {
        "apiVersion": API_VERSION,
        "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }

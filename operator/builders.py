"""Pure builders: a WorkerPool spec in, the Deployment and metrics Service manifests out.

No client, clock or environment here: the handlers feed these functions and
apply what comes back. A spec-hash annotation on the Deployment and the Service
records which spec produced it, so a reconcile can tell "already applied" from
"patch due" without comparing server-defaulted manifests.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workerfleet.operator import models
from workerfleet.worker import config as worker_config

WORKER_CONTAINER = "worker"
WORKER_COMMAND = ["workerfleet-worker"]
HTTP_PORT = 8080
HTTP_PORT_NAME = "http"
METRICS_PORT_NAME = "metrics"
METRICS_SERVICE_SUFFIX = "-metrics"
# The worker image runs as this unprivileged user (see the Dockerfile).
WORKER_UID = 10001
# Time beyond the worker's own shutdown grace for releasing jobs and marking itself offline.
TERMINATION_MARGIN_SECONDS = 15
REVISION_HISTORY_LIMIT = 5
TMP_VOLUME = "tmp"
TMP_SIZE_LIMIT = "256Mi"

LIVENESS_PERIOD_SECONDS = 10
LIVENESS_FAILURE_THRESHOLD = 3
READINESS_PERIOD_SECONDS = 5
READINESS_FAILURE_THRESHOLD = 2
PROBE_TIMEOUT_SECONDS = 3

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_POOL = f"{models.GROUP}/pool"
APP_NAME = "workerfleet-worker"
MANAGER = "workerfleet-operator"
SPEC_HASH_ANNOTATION = f"{models.GROUP}/spec-hash"


@dataclass(frozen=True)
class Owner:
    """The WorkerPool that owns the built objects (garbage collection deletes them with it)."""

    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": models.API_VERSION,
            "kind": models.WORKERPOOL_KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def pool_key(namespace: str, name: str) -> str:
    """The pool's name in the workers table: unique across namespaces sharing a database."""
    return f"{namespace}/{name}"


def selector_labels(pool: str) -> dict[str, str]:
    return {LABEL_NAME: APP_NAME, LABEL_POOL: pool}


def selector_string(pool: str) -> str:
    return ",".join(f"{key}={value}" for key, value in selector_labels(pool).items())


def pool_labels(pool: str) -> dict[str, str]:
    return {
        **selector_labels(pool),
        LABEL_INSTANCE: pool,
        LABEL_COMPONENT: "worker",
        LABEL_PART_OF: "workerfleet",
        LABEL_MANAGED_BY: MANAGER,
    }


def metrics_service_name(pool: str) -> str:
    return f"{pool}{METRICS_SERVICE_SUFFIX}"


def termination_grace_seconds(spec: models.WorkerPoolSpec) -> int:
    return math.ceil(spec.worker.shutdown_grace_seconds) + TERMINATION_MARGIN_SECONDS


# The pod's own identity, from the downward API (the worker's POD_* settings).
POD_FIELDS = {"pod_name": "metadata.name", "pod_uid": "metadata.uid", "pod_ip": "status.podIP"}


def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def worker_env(spec: models.WorkerPoolSpec, owner: Owner) -> list[dict[str, Any]]:
    """The worker's settings as its own variables, then the user's extra ones.

    Names and order come from the worker's settings (worker/config.py), so the
    operator never spells a variable itself and the list (part of the spec hash)
    does not move when a field moves here.
    """
    secret = spec.database.secret_ref
    sources: dict[str, dict[str, Any]] = {
        "dsn": {"valueFrom": {"secretKeyRef": {"name": secret.name, "key": secret.key}}},
        "queues": {"value": spec.queue},
        "pool": {"value": pool_key(owner.namespace, owner.name)},
        "health_port": {"value": str(HTTP_PORT)},
    }
    for field, value in spec.worker.by_worker_setting().items():
        if value is not None:
            sources[field] = {"value": _env_text(value)}
    for field, path in POD_FIELDS.items():
        sources[field] = {"valueFrom": {"fieldRef": {"fieldPath": path}}}
    env = [
        {"name": worker_config.variable_of(field), **sources[field]}
        for field in worker_config.WorkerSettings.model_fields
        if field in sources
    ]
    env += [user.model_dump(by_alias=True, exclude_none=True) for user in spec.env]
    return env


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": HTTP_PORT, "scheme": "HTTP"},
        "periodSeconds": period,
        "timeoutSeconds": PROBE_TIMEOUT_SECONDS,
        "failureThreshold": failures,
    }


def pod_security_context() -> dict[str, Any]:
    """What Pod Security "restricted" admits, and a little more (fixed ids)."""
    return {
        "runAsNonRoot": True,
        "runAsUser": WORKER_UID,
        "runAsGroup": WORKER_UID,
        "fsGroup": WORKER_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": WORKER_UID,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def worker_container(spec: models.WorkerPoolSpec, owner: Owner) -> dict[str, Any]:
    resources = spec.resources
    return {
        "name": WORKER_CONTAINER,
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": list(WORKER_COMMAND),
        "env": worker_env(spec, owner),
        "ports": [{"name": HTTP_PORT_NAME, "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "livenessProbe": _probe("/healthz", LIVENESS_PERIOD_SECONDS, LIVENESS_FAILURE_THRESHOLD),
        "readinessProbe": _probe("/readyz", READINESS_PERIOD_SECONDS, READINESS_FAILURE_THRESHOLD),
        "resources": {
            key: {name: str(quantity) for name, quantity in values.items()}
            for key, values in (("requests", resources.requests), ("limits", resources.limits))
            if values
        },
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": TMP_VOLUME, "mountPath": "/tmp"}],
    }


def pod_template(spec: models.WorkerPoolSpec, owner: Owner) -> dict[str, Any]:
    """The generated pod template with the user's overrides merged in."""
    labels = pool_labels(owner.name)
    generated: dict[str, Any] = {
        "metadata": {
            "labels": dict(labels),
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(HTTP_PORT),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": {
            "terminationGracePeriodSeconds": termination_grace_seconds(spec),
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": pod_security_context(),
            "containers": [worker_container(spec, owner)],
            "volumes": [{"name": TMP_VOLUME, "emptyDir": {"sizeLimit": TMP_SIZE_LIMIT}}],
        },
    }
    overrides = {
        "metadata": spec.template.metadata.model_dump(by_alias=True),
        "spec": spec.template.spec,
    }
    template: dict[str, Any] = deep_merge(generated, overrides)
    # The selector must keep matching whatever the overrides say.
    template["metadata"]["labels"].update(selector_labels(owner.name))
    return template


def deep_merge(base: Any, override: Any) -> Any:
    """``override`` laid over ``base``: maps key by key, named lists by name, the rest replaced."""
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        merged = {key: value for key, value in base.items()}
        for key, value in override.items():
            merged[key] = deep_merge(base[key], value) if key in base else _copy(value)
        return merged
    if _named_list(base) and _named_list(override):
        merged_items = {item["name"]: item for item in base}
        order = [item["name"] for item in base]
        for item in override:
            name = item["name"]
            if name in merged_items:
                merged_items[name] = deep_merge(merged_items[name], item)
            else:
                merged_items[name] = _copy(item)
                order.append(name)
        return [merged_items[name] for name in order]
    return _copy(override)


def _named_list(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(item, Mapping) and isinstance(item.get("name"), str) for item in value
    )


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


def spec_hash(manifest: Mapping[str, Any]) -> str:
    """A digest of what the spec decides (labels and pod template), not of replicas."""
    relevant = {
        "labels": manifest["metadata"].get("labels", {}),
        "spec": {k: v for k, v in manifest["spec"].items() if k != "replicas"},
    }
    canonical = json.dumps(relevant, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def deployment(spec: models.WorkerPoolSpec, owner: Owner, replicas: int) -> dict[str, Any]:
    """The pool's Deployment, named like the pool, carrying its spec hash."""
    manifest: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": owner.name,
            "namespace": owner.namespace,
            "labels": pool_labels(owner.name),
            "annotations": {},
            "ownerReferences": [owner.reference()],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector_labels(owner.name)},
            "revisionHistoryLimit": REVISION_HISTORY_LIMIT,
            # New workers come up before old ones drain, so a rollout never lowers capacity.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
            },
            "template": pod_template(spec, owner),
        },
    }
    manifest["metadata"]["annotations"][SPEC_HASH_ANNOTATION] = spec_hash(manifest)
    return manifest


def metrics_service(owner: Owner) -> dict[str, Any]:
    """A ClusterIP Service over the workers' /metrics port, for Prometheus to discover."""
    manifest: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": metrics_service_name(owner.name),
            "namespace": owner.namespace,
            "labels": {**pool_labels(owner.name), LABEL_COMPONENT: "metrics"},
            "annotations": {},
            "ownerReferences": [owner.reference()],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(owner.name),
            "ports": [
                {
                    "name": METRICS_PORT_NAME,
                    "port": HTTP_PORT,
                    "targetPort": HTTP_PORT,
                    "protocol": "TCP",
                }
            ],
        },
    }
    manifest["metadata"]["annotations"][SPEC_HASH_ANNOTATION] = spec_hash(manifest)
    return manifest

"""A pool's children, applied when they are missing or out of date.

The workers' ServiceAccount is applied once per pool by each operator process
(and whenever the Deployment is), unless the pool's template names its own.
The Deployment and the ``<pool>-metrics`` Service are built by ``builders.py``
and compared with what the watch last saw of them (the indexes in
``handlers.py``): a child that is missing, carries another spec hash or, for the
Deployment, was edited by hand (see ``drift.py``) is applied again with
server-side apply. Nothing is written when nothing changed, and a manifest the
API server refused is not sent again before its backoff ends (``apply_backoff``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from workerfleet.operator import apply_backoff, builders, drift, metrics, models, reasons
from workerfleet.operator.errors import ApplyError
from workerfleet.operator.kopf_glue import post
from workerfleet.operator.kube import ApiException, api_error_message
from workerfleet.operator.runtime import PoolState, Runtime
from workerfleet.operator.views import DeploymentView, ServiceView

# The API server refused the manifest as written: the spec is at fault.
INVALID_STATUS_CODES = (400, 422)


async def apply(runtime: Runtime, manifest: Mapping[str, Any], state: PoolState) -> dict[str, Any]:
    """Server-side apply of ``manifest``; raises :class:`ApplyError`, also without sending
    it while the same manifest's last failure is backed off."""
    kind, failures, now = manifest["kind"], state.apply_failures, time.monotonic()
    sent = apply_backoff.fingerprint(manifest)
    held = failures.held(kind, sent, now)
    if held is not None:
        raise ApplyError(held.message, invalid=held.invalid)
    try:
        stored = await runtime.kube.apply(manifest)
    except ApiException as error:
        message = f"{kind} {manifest['metadata']['name']}: {api_error_message(error)}"
        invalid = error.status in INVALID_STATUS_CODES
    except Exception as error:  # connection trouble: retried after the backoff
        message, invalid = f"{kind} apply failed: {error}", False
    else:
        failures.succeeded(kind)
        return stored
    failing = failures.failed(kind, sent, message, invalid, time.monotonic())
    metrics.APPLY_FAILURES.labels(kind=kind).inc()
    raise ApplyError(failing.message, invalid=invalid)


def built(
    state: PoolState, kind: str, spec: models.WorkerPoolSpec, replicas: int, owner: builders.Owner
) -> tuple[dict[str, Any], str]:
    """The child's manifest and spec hash, built once per parsed spec and replica count:
    a pool at rest is compared with its children every sync, at no cost."""
    cached = state.built.get(kind)
    if cached is not None and cached[0] is spec and cached[1] == replicas:
        return cached[2], cached[3]
    if kind == "Deployment":
        manifest = builders.deployment(spec, owner, replicas)
    else:
        manifest = builders.metrics_service(owner)
    spec_hash = builders.spec_hash(manifest)
    state.built[kind] = (spec, replicas, manifest, spec_hash)
    return manifest, spec_hash


async def ensure_service_account(
    runtime: Runtime, spec: models.WorkerPoolSpec, owner: builders.Owner, state: PoolState
) -> None:
    """The workers' own ServiceAccount exists before a pod needs it."""
    if state.service_account_applied or builders.template_service_account(spec):
        return
    await apply(runtime, builders.worker_service_account(owner), state)
    state.service_account_applied = True


async def ensure_deployment(
    runtime: Runtime,
    body: Any,
    spec: models.WorkerPoolSpec,
    owner: builders.Owner,
    desired: int,
    live: DeploymentView | None,
    state: PoolState,
) -> DeploymentView | None:
    """The Deployment as it is after this call, applied if it was missing or out of date."""
    manifest, spec_hash = built(state, "Deployment", spec, desired, owner)
    cause = drift.apply_cause(spec_hash, desired, live, state.written_generation)
    if cause is None:
        return live
    state.service_account_applied = False  # a changed spec re-applies it too
    await ensure_service_account(runtime, spec, owner, state)
    stored = await apply(runtime, manifest, state)
    meta = stored.get("metadata", {})
    view = DeploymentView.from_body(meta, stored.get("spec", {}), stored.get("status", {}))
    previous_uid = state.deployment_uid or (live.uid if live else None)
    state.written_generation = view.generation
    state.deployment_uid = view.uid
    metrics.DEPLOYMENT_APPLIES.labels(cause=cause).inc()
    if cause == "missing":
        restored = previous_uid is not None and previous_uid != view.uid
        reason = reasons.EVENT_DEPLOYMENT_RESTORED if restored else reasons.EVENT_DEPLOYMENT_CREATED
        verb = "recreated after it was deleted" if restored else "created"
        if restored or view.generation == 1:
            post(body, "Normal", reason, f"Deployment {view.name} {verb}")
    elif cause == "edited":
        post(
            body,
            "Normal",
            reasons.EVENT_DEPLOYMENT_RESTORED,
            f"Deployment {view.name} was edited by hand; the pool's spec was applied again",
        )
    elif cause == "spec":
        post(
            body,
            "Normal",
            reasons.EVENT_DEPLOYMENT_UPDATED,
            f"Deployment {view.name} updated to spec {spec_hash}",
        )
    return view


async def ensure_service(
    runtime: Runtime,
    spec: models.WorkerPoolSpec,
    owner: builders.Owner,
    live: ServiceView | None,
    state: PoolState,
) -> None:
    """The metrics Service exists exactly when ``spec.metrics.service`` asks for it.

    ``live`` is the watch's view of it, so a Service deleted by hand is applied
    again at the next sync, not only when the pool's spec changes.
    """
    if not spec.metrics.service:
        if live is not None:
            await runtime.kube.delete_service(owner.namespace, live.name)
        return
    manifest, spec_hash = built(state, "Service", spec, 0, owner)
    if live is None or live.spec_hash != spec_hash:
        await apply(runtime, manifest, state)

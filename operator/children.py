"""A pool's children, applied when they are missing or out of date.

The Deployment and the ``<pool>-metrics`` Service are built by ``builders.py``
and compared with what the watch last saw of them (the indexes in
``handlers.py``): a child that is missing, carries another spec hash or, for the
Deployment, was edited by hand (see ``drift.py``) is applied again with
server-side apply. Nothing is written when nothing changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from workerfleet.operator import builders, drift, metrics, models, reasons
from workerfleet.operator.errors import ApplyError
from workerfleet.operator.kopf_glue import post
from workerfleet.operator.kube import ApiException, api_error_message
from workerfleet.operator.runtime import PoolState, Runtime
from workerfleet.operator.views import DeploymentView, ServiceView

# The API server refused the manifest as written: the spec is at fault.
INVALID_STATUS_CODES = (400, 422)


async def apply(runtime: Runtime, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Server-side apply of ``manifest``; raises :class:`ApplyError`."""
    try:
        return await runtime.kube.apply(manifest)
    except ApiException as error:
        kind = manifest["kind"]
        message = f"{kind} {manifest['metadata']['name']}: {api_error_message(error)}"
        raise ApplyError(message, invalid=error.status in INVALID_STATUS_CODES) from None
    except Exception as error:  # connection trouble: the next tick retries
        raise ApplyError(f"{manifest['kind']} apply failed: {error}", invalid=False) from None


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
    manifest = builders.deployment(spec, owner, desired)
    cause = drift.apply_cause(builders.spec_hash(manifest), desired, live, state.written_generation)
    if cause is None:
        return live
    stored = await apply(runtime, manifest)
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
            f"Deployment {view.name} updated to spec {builders.spec_hash(manifest)}",
        )
    return view


async def ensure_service(
    runtime: Runtime,
    spec: models.WorkerPoolSpec,
    owner: builders.Owner,
    live: ServiceView | None,
) -> None:
    """The metrics Service exists exactly when ``spec.metrics.service`` asks for it.

    ``live`` is the watch's view of it, so a Service deleted by hand is applied
    again at the next sync, not only when the pool's spec changes.
    """
    if not spec.metrics.service:
        if live is not None:
            await runtime.kube.delete_service(owner.namespace, live.name)
        return
    manifest = builders.metrics_service(owner)
    if live is None or live.spec_hash != builders.spec_hash(manifest):
        await apply(runtime, manifest)

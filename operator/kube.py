"""The few Kubernetes API calls the operator makes itself (kopf does the watching): applies
of a pool's children, status patches of WorkerPools and Monitors, pod deletes and
annotations, Secret reads.

Server-side apply with a fixed field manager: applying the same manifest twice
changes nothing, fields a person edited by hand that the operator owns are
taken back (``force``), and fields the operator never set are left alone. The
kubernetes client is synchronous, so calls run in threads; responses are kept
as plain JSON.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from workerfleet.operator import builders, models

APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
MERGE_PATCH_CONTENT_TYPE = "application/merge-patch+json"

__all__ = ["ApiException", "Kube"]


def api_client() -> client.ApiClient:
    """In a pod: the service account; elsewhere: $KUBECONFIG or ~/.kube/config."""
    try:
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return client.ApiClient(configuration)
    except config.ConfigException:
        fallback: client.ApiClient = config.new_client_from_config()  # type: ignore[no-untyped-call]
        return fallback


class Kube:
    def __init__(self, api: client.ApiClient, request_timeout_seconds: float) -> None:
        self.api = api
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.timeout = request_timeout_seconds

    async def patch_status(
        self, plural: str, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """A merge patch of a WorkerPool's or Monitor's status; the stored object, or None
        when it is gone."""

        def send() -> dict[str, Any] | None:
            try:
                response: Any = self.custom.patch_namespaced_custom_object_status(
                    models.GROUP,
                    models.VERSION,
                    namespace,
                    plural,
                    name,
                    {"status": dict(patch)},
                    _content_type=MERGE_PATCH_CONTENT_TYPE,
                    _preload_content=False,
                    _request_timeout=self.timeout,
                )
            except ApiException as error:
                if error.status == 404:
                    return None
                raise
            stored: dict[str, Any] = json.loads(response.data)
            return stored

        return await asyncio.to_thread(send)

    async def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply of a Deployment, Service or ServiceAccount; returns the stored
        object."""
        return await asyncio.to_thread(self._apply, manifest)

    def _apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        methods = {
            "Deployment": self.apps.patch_namespaced_deployment,
            "Service": self.core.patch_namespaced_service,
            "ServiceAccount": self.core.patch_namespaced_service_account,
        }
        meta = manifest["metadata"]
        # Without preloading, the client hands back the raw HTTP response.
        response: Any = methods[manifest["kind"]](
            meta["name"],
            meta["namespace"],
            dict(manifest),
            field_manager=builders.MANAGER,
            force=True,
            _content_type=APPLY_CONTENT_TYPE,
            _preload_content=False,
            _request_timeout=self.timeout,
        )
        stored: dict[str, Any] = json.loads(response.data)
        return stored

    async def delete_service(self, namespace: str, name: str) -> bool:
        """Delete a Service; False when it did not exist."""

        def delete() -> bool:
            try:
                self.core.delete_namespaced_service(name, namespace, _request_timeout=self.timeout)
            except ApiException as error:
                if error.status == 404:
                    return False
                raise
            return True

        return await asyncio.to_thread(delete)

    async def delete_pod(self, namespace: str, name: str, uid: str | None = None) -> bool:
        """Delete a pod; False when it did not exist, or (given ``uid``) is another pod now."""

        def delete() -> bool:
            options = client.V1DeleteOptions(
                preconditions=client.V1Preconditions(uid=uid) if uid else None
            )
            try:
                self.core.delete_namespaced_pod(
                    name, namespace, body=options, _request_timeout=self.timeout
                )
            except ApiException as error:
                if error.status in (404, 409):  # 409: the uid precondition failed
                    return False
                raise
            return True

        return await asyncio.to_thread(delete)

    async def annotate_pod(self, namespace: str, name: str, annotations: Mapping[str, str]) -> bool:
        """Set annotations on a pod (a merge patch); False when the pod is gone."""

        def patch() -> bool:
            try:
                self.core.patch_namespaced_pod(
                    name,
                    namespace,
                    {"metadata": {"annotations": dict(annotations)}},
                    _request_timeout=self.timeout,
                )
            except ApiException as error:
                if error.status == 404:
                    return False
                raise
            return True

        return await asyncio.to_thread(patch)

    def read_secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """The Secret's base64 data, or None if it does not exist (runs in the caller's thread)."""
        try:
            secret = self.core.read_namespaced_secret(
                name, namespace, _request_timeout=self.timeout
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return {key: str(value) for key, value in (secret.data or {}).items()}

    def close(self) -> None:
        self.api.close()  # type: ignore[no-untyped-call]


def api_error_message(error: ApiException) -> str:
    """The API server's own message (it names the field), or the HTTP status."""
    try:
        body = json.loads(error.body or "{}")
    except (TypeError, ValueError):
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    return str(message or f"HTTP {error.status} {error.reason}")

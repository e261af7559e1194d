"""A small JSON client for the kube-apiserver, on top of the `kubernetes` package's
configuration and connection pool (so kubeconfig auth, TLS and client certificates work
as everywhere else), returning plain dicts.

The generated typed API is avoided on purpose: the agent reads and writes raw JSON, and
deserialising into models would validate (and reject) what the apiserver itself accepts.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import kubernetes
import urllib3
from kubernetes.watch.watch import iter_resp_lines

JsonDict = dict[str, Any]
T = TypeVar("T")

log = logging.getLogger("node-agent")

REQUEST_TIMEOUT_SECONDS = 15.0
CONNECT_TIMEOUT_SECONDS = 5.0
CONNECTION_POOL_SIZE = 64
RETRY_INITIAL_SECONDS = 0.5
RETRY_CAP_SECONDS = 5.0
STRATEGIC_MERGE = "application/strategic-merge-patch+json"
MERGE_PATCH = "application/merge-patch+json"


class ApiError(Exception):
    """A non-2xx answer (status > 0) or a transport failure (status 0)."""

    def __init__(self, status: int, message: str, body: JsonDict | None = None) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status
        self.body = body or {}

    @property
    def retryable(self) -> bool:
        return self.status == 0 or self.status == 429 or self.status >= 500


class KubeApi:
    def __init__(self, kubeconfig: str) -> None:
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=configuration, persist_config=False
        )
        configuration.connection_pool_maxsize = CONNECTION_POOL_SIZE
        # The apiserver is on loopback; an inherited proxy must never see its traffic.
        configuration.proxy = None
        self._client = kubernetes.client.ApiClient(configuration)
        self._auth = ["BearerToken"]

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | tuple[float, float] = (CONNECT_TIMEOUT_SECONDS, REQUEST_TIMEOUT_SECONDS),
    ) -> JsonDict:
        response = self._send(method, path, query, body, content_type, timeout)
        raw = response.read()
        payload = _json_or_none(raw)
        if not 200 <= response.status <= 299:
            message = (payload or {}).get("message") or raw.decode("utf-8", "replace")[:500]
            raise ApiError(response.status, f"{method} {path}: {message}", payload)
        return payload or {}

    def get(self, path: str, **query: Any) -> JsonDict:
        return self.request("GET", path, query=query)

    def post(self, path: str, body: Any) -> JsonDict:
        return self.request("POST", path, body=body)

    def patch(self, path: str, body: Any, content_type: str = STRATEGIC_MERGE) -> JsonDict:
        return self.request("PATCH", path, body=body, content_type=content_type)

    def delete(self, path: str, body: Any = None) -> JsonDict:
        return self.request("DELETE", path, body=body)

    def watch(self, path: str, query: Mapping[str, Any], read_timeout: float) -> Iterator[JsonDict]:
        """Watch events (dicts with `type` and `object`) until the server ends the stream."""
        response = self._send(
            "GET",
            path,
            {**query, "watch": "true"},
            None,
            "application/json",
            (CONNECT_TIMEOUT_SECONDS, read_timeout),
        )
        if not 200 <= response.status <= 299:
            raw = response.read()
            payload = _json_or_none(raw)
            message = (payload or {}).get("message") or raw.decode("utf-8", "replace")[:500]
            raise ApiError(response.status, f"watch {path}: {message}", payload)
        try:
            for line in iter_resp_lines(response.response):  # type: ignore[no-untyped-call]
                if line:
                    yield json.loads(line)
        finally:
            response.response.release_conn()

    def _send(
        self,
        method: str,
        path: str,
        query: Mapping[str, Any] | None,
        body: Any,
        content_type: str,
        timeout: float | tuple[float, float],
    ) -> Any:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        query_params = [
            (key, _query_value(value)) for key, value in (query or {}).items() if value is not None
        ]
        try:
            prepared = self._client.param_serialize(
                method,
                path,
                query_params=query_params,
                header_params=headers,
                body=body,
                auth_settings=self._auth,
            )
            return self._client.call_api(*prepared, _request_timeout=timeout)
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise ApiError(0, f"{method} {path}: {error}") from error
        except kubernetes.client.exceptions.ApiException as error:
            raise ApiError(error.status or 0, f"{method} {path}: {error.reason}") from error


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _json_or_none(raw: bytes) -> JsonDict | None:
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def with_retries(
    call: Callable[[], T],
    what: str,
    stop: threading.Event,
    *,
    attempts: int | None = None,
) -> T:
    """Calls until it succeeds, retrying transient failures (transport, 429, 5xx) with
    capped exponential back-off; gives up at `stop` or after `attempts` tries and
    re-raises. Non-retryable errors propagate at once."""
    delay = RETRY_INITIAL_SECONDS
    tries = 0
    while True:
        tries += 1
        try:
            return call()
        except ApiError as error:
            if not error.retryable or stop.is_set() or (attempts is not None and tries >= attempts):
                raise
            log.warning("%s failed (%s); retrying in %.1fs", what, error, delay)
        if stop.wait(delay):
            raise ApiError(0, f"{what}: agent stopping")
        delay = min(delay * 2, RETRY_CAP_SECONDS)

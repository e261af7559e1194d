"""The materialized volumes of one pod (effects): files under `<root>/<pod uid>/<volume>/`.

`PodVolumes.binds()` writes the pod's volumes the first time a container needs them
(tokens from TokenRequest, ConfigMaps and Secrets from the API, downward-API fields from
the pod) and returns the container's binds; `refresh_if_due()`, called from the pod
worker's loop, replaces a token once 80% of its lifetime has passed and rereads the
other sources every `RESYNC_SECONDS`, as the kubelet does. Each file is replaced
atomically (write, then rename), so a process reading it never sees half a token.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from localcluster.nodeagent import env, volumes
from localcluster.nodeagent.api import ApiError, KubeApi

log = logging.getLogger("node-agent")

JsonDict = dict[str, Any]

# How often ConfigMap, Secret and downward-API files are reread (the kubelet's sync period).
RESYNC_SECONDS = 60.0
DIRECTORY_MODE = 0o755


class PodVolumes:
    """Thread-safe: container runners call `binds`, the pod worker `refresh_if_due`."""

    def __init__(
        self,
        api: KubeApi,
        pod: Mapping[str, Any],
        root: Path,
        addresses: env.PodAddresses,
        node: env.NodeAllocatable,
        clock: Callable[[], float] = time.time,
    ) -> None:
        metadata = pod.get("metadata") or {}
        self.directory = root / str(metadata.get("uid", ""))
        self._api = api
        self._pod = pod
        self._namespace = str(metadata.get("namespace", ""))
        self._addresses = addresses
        self._node = node
        self._clock = clock
        self._lock = threading.Lock()
        self._problem: volumes.VolumeError | None = None
        try:
            self._plans = volumes.plan_volumes(pod)
        except volumes.VolumeError as error:
            self._plans, self._problem = {}, error
        self._written: dict[str, set[str]] = {}
        self._tokens: dict[tuple[str, str], tuple[volumes.FileContent, float]] = {}
        """(volume, path) -> the token written there and when it is to be replaced."""
        self._synced_at: float | None = None

    @property
    def planned(self) -> bool:
        return bool(self._plans) or self._problem is not None

    def binds(self, container: Mapping[str, Any]) -> list[volumes.Bind]:
        """The container's binds, its volumes written first; raises VolumeError."""
        if self._problem is not None:
            raise self._problem
        with self._lock:
            if self._synced_at is None and self._plans:
                self._write_all()
        return volumes.container_binds(container, self._plans, self.directory)

    def refresh_if_due(self) -> None:
        """Rewrites the volumes when a token is due or the resync period passed; a
        failure keeps the current files and is retried at the next call."""
        with self._lock:
            if self._synced_at is None:
                return
            now = self._clock()
            token_due = any(now >= due for _, due in self._tokens.values())
            if not token_due and now - self._synced_at < RESYNC_SECONDS:
                return
            try:
                self._write_all()
            except volumes.VolumeError as error:
                log.warning("pod %s: volumes not refreshed: %s", self.directory.name, error)

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- writing -------------------------------------------------------------------------

    def _write_all(self) -> None:
        contents: dict[str, dict[str, volumes.FileContent]] = {}
        tokens = dict(self._tokens)
        for name, plan in self._plans.items():
            files: dict[str, volumes.FileContent] = {}
            for source in plan.sources:
                if isinstance(source, volumes.TokenSource):
                    key = (name, source.path)
                    cached = tokens.get(key)
                    if cached is None or self._clock() >= cached[1]:
                        tokens[key] = self._token(source, plan.default_mode)
                    files[source.path] = tokens[key][0]
                else:
                    files.update(self._files_of(source, plan.default_mode))
            contents[name] = files
        # Everything was fetched before anything is written: a failure changes no file.
        for name, files in contents.items():
            self._write_volume(name, files)
        self._tokens = tokens
        self._synced_at = self._clock()

    def _files_of(
        self, source: volumes.KeysSource | volumes.FieldsSource, default_mode: int
    ) -> dict[str, volumes.FileContent]:
        if isinstance(source, volumes.KeysSource):
            return volumes.key_files(source, self._values(source), default_mode)
        container: Mapping[str, Any] = {}
        return volumes.field_files(
            source, self._pod, container, self._addresses, self._node, default_mode
        )

    def _token(
        self, source: volumes.TokenSource, default_mode: int
    ) -> tuple[volumes.FileContent, float]:
        """A new token for the source, and when to replace it."""
        path = (
            f"/api/v1/namespaces/{self._namespace}/serviceaccounts/{source.service_account}/token"
        )
        issued_at = self._clock()
        try:
            answer = self._api.post(path, volumes.token_request(source, self._pod))
        except ApiError as error:
            raise volumes.VolumeError(
                f"token for serviceaccount {source.service_account!r} refused: {error}"
            ) from error
        status = answer.get("status") or {}
        granted = (answer.get("spec") or {}).get("expirationSeconds") or source.expiration_seconds
        mode = default_mode if source.mode is None else source.mode
        content = volumes.FileContent(str(status.get("token", "")).encode(), mode)
        return content, volumes.token_refresh_at(issued_at, float(granted))

    def _values(self, source: volumes.KeysSource) -> Mapping[str, str] | None:
        plural = "secrets" if source.kind == "secret" else "configmaps"
        try:
            obj = self._api.get(f"/api/v1/namespaces/{self._namespace}/{plural}/{source.name}")
        except ApiError as error:
            if error.status == 404:
                return None
            raise volumes.VolumeError(f'{source.kind} "{source.name}": {error}') from error
        return env.secret_values(obj) if source.kind == "secret" else env.config_map_values(obj)

    def _write_volume(self, name: str, files: Mapping[str, volumes.FileContent]) -> None:
        directory = self.directory / name
        directory.mkdir(parents=True, exist_ok=True, mode=DIRECTORY_MODE)
        for relative, content in files.items():
            target = directory / relative
            target.parent.mkdir(parents=True, exist_ok=True, mode=DIRECTORY_MODE)
            staging = target.with_name(f".{target.name}.tmp")
            staging.write_bytes(content.data)
            os.chmod(staging, content.mode)
            staging.replace(target)
        for stale in self._written.get(name, set()) - set(files):
            with contextlib.suppress(FileNotFoundError):
                (directory / stale).unlink()
        self._written[name] = set(files)

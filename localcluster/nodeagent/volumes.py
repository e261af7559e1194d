"""Volumes the local node agent materializes, planned the way the kubelet plans them (pure).

The agent writes the files of `projected`, `configMap`, `secret` and `downwardAPI`
volumes into a directory per pod and volume, and binds each directory (or a subPath of
it) read-only onto the container's mountPath in a mount namespace of its own
(`mounts.py`). That is what in-cluster clients need: the ServiceAccount admission plugin
gives every pod that does not opt out (`automountServiceAccountToken: false`) a projected
`kube-api-access-*` volume of a bound token, the `kube-root-ca.crt` ConfigMap and the
namespace, mounted at /var/run/secrets/kubernetes.io/serviceaccount.

Other volume types (emptyDir, hostPath, persistentVolumeClaim...) are not materialized:
their mounts are left out and the process sees the host's filesystem there, as before.

Nothing here touches the API or the filesystem; `projection.py` does, from these plans.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from localcluster.nodeagent import env

JsonDict = dict[str, Any]
KeysKind = Literal["configmap", "secret"]

DEFAULT_MODE = 0o644
# What the API server enforces for a projected token, and what the kubelet asks for
# when the source says nothing.
MIN_TOKEN_SECONDS = 600
DEFAULT_TOKEN_SECONDS = 3600
# The kubelet refreshes a token once 80% of its lifetime passed, or once it is a day old.
TOKEN_REFRESH_FRACTION = 0.8
TOKEN_MAX_AGE_SECONDS = 24 * 3600.0


class VolumeError(Exception):
    """A volume cannot be materialized yet (a missing ConfigMap, a refused token
    request); the container waits in ContainerCreating with this message."""


@dataclass(frozen=True)
class KeyItem:
    key: str
    path: str
    mode: int | None


@dataclass(frozen=True)
class TokenSource:
    service_account: str
    path: str
    expiration_seconds: int
    audience: str | None
    mode: int | None


@dataclass(frozen=True)
class KeysSource:
    kind: KeysKind
    name: str
    items: tuple[KeyItem, ...] | None
    """None: every key, each as a file of its own name."""
    optional: bool


@dataclass(frozen=True)
class FieldItem:
    path: str
    field_path: str | None
    resource_field: Mapping[str, Any] | None
    mode: int | None


@dataclass(frozen=True)
class FieldsSource:
    items: tuple[FieldItem, ...]


Source = TokenSource | KeysSource | FieldsSource


@dataclass(frozen=True)
class VolumePlan:
    name: str
    sources: tuple[Source, ...]
    default_mode: int


@dataclass(frozen=True)
class Bind:
    """`source` (a directory or file the agent wrote) appears read-only at `target`."""

    source: Path
    target: str


@dataclass(frozen=True)
class FileContent:
    data: bytes
    mode: int


def relative_path(path: str, where: str) -> str:
    """A file path inside a volume: relative, no `..` element, as the API validates it."""
    normal = posixpath.normpath(path)
    if not path or path.startswith("/") or normal.startswith("..") or "/../" in f"/{path}/":
        raise VolumeError(f"{where}: path {path!r} must be relative and stay inside the volume")
    return normal


def _key_items(raw: Any, where: str) -> tuple[KeyItem, ...] | None:
    if not raw:
        return None
    return tuple(
        KeyItem(
            key=str(item.get("key", "")),
            path=relative_path(str(item.get("path", "")), where),
            mode=item.get("mode"),
        )
        for item in raw
    )


def _fields(raw: Any, where: str) -> FieldsSource:
    return FieldsSource(
        tuple(
            FieldItem(
                path=relative_path(str(item.get("path", "")), where),
                field_path=(item.get("fieldRef") or {}).get("fieldPath"),
                resource_field=item.get("resourceFieldRef"),
                mode=item.get("mode"),
            )
            for item in raw or []
        )
    )


def _keys(kind: KeysKind, raw: Mapping[str, Any], name_field: str, where: str) -> KeysSource:
    return KeysSource(
        kind=kind,
        name=str(raw.get(name_field, "")),
        items=_key_items(raw.get("items"), where),
        optional=bool(raw.get("optional")),
    )


def _projected_source(raw: Mapping[str, Any], pod: Mapping[str, Any], where: str) -> Source:
    if raw.get("serviceAccountToken") is not None:
        token = raw["serviceAccountToken"]
        seconds = int(token.get("expirationSeconds") or DEFAULT_TOKEN_SECONDS)
        return TokenSource(
            service_account=str((pod.get("spec") or {}).get("serviceAccountName") or "default"),
            path=relative_path(str(token.get("path", "")), where),
            expiration_seconds=max(seconds, MIN_TOKEN_SECONDS),
            audience=token.get("audience") or None,
            mode=None,
        )
    if raw.get("configMap") is not None:
        return _keys("configmap", raw["configMap"], "name", where)
    if raw.get("secret") is not None:
        return _keys("secret", raw["secret"], "name", where)
    if raw.get("downwardAPI") is not None:
        return _fields(raw["downwardAPI"].get("items"), where)
    raise VolumeError(
        f"{where}: projected source {sorted(raw)} is not supported by the local node agent "
        "(supported: serviceAccountToken, configMap, secret, downwardAPI)"
    )


def plan_volumes(pod: Mapping[str, Any]) -> dict[str, VolumePlan]:
    """The pod's volumes the agent materializes, by name."""
    plans: dict[str, VolumePlan] = {}
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        name = str(volume.get("name", ""))
        where = f"volume {name!r}"
        sources: tuple[Source, ...]
        if volume.get("projected") is not None:
            projected = volume["projected"]
            sources = tuple(
                _projected_source(raw, pod, where) for raw in projected.get("sources") or []
            )
            mode = projected.get("defaultMode")
        elif volume.get("configMap") is not None:
            sources = (_keys("configmap", volume["configMap"], "name", where),)
            mode = volume["configMap"].get("defaultMode")
        elif volume.get("secret") is not None:
            sources = (_keys("secret", volume["secret"], "secretName", where),)
            mode = volume["secret"].get("defaultMode")
        elif volume.get("downwardAPI") is not None:
            sources = (_fields(volume["downwardAPI"].get("items"), where),)
            mode = volume["downwardAPI"].get("defaultMode")
        else:
            continue
        plans[name] = VolumePlan(name, sources, DEFAULT_MODE if mode is None else int(mode))
    return plans


def container_binds(
    container: Mapping[str, Any], plans: Mapping[str, VolumePlan], volume_dir: Path
) -> list[Bind]:
    """The container's mounts of materialized volumes, each read-only at its mountPath
    (the kubelet mounts these volume types read-only whatever the mount says)."""
    binds: list[Bind] = []
    for mount in container.get("volumeMounts") or []:
        name = str(mount.get("name", ""))
        if name not in plans:
            continue
        target = str(mount.get("mountPath", ""))
        if not target.startswith("/"):
            raise VolumeError(f"volumeMount {name!r}: mountPath {target!r} must be absolute")
        source = volume_dir / name
        if mount.get("subPath"):
            source = source / relative_path(str(mount["subPath"]), f"volumeMount {name!r}")
        binds.append(Bind(source=source, target=posixpath.normpath(target)))
    return binds


def key_files(
    source: KeysSource, values: Mapping[str, str] | None, default_mode: int
) -> dict[str, FileContent]:
    """The files of a ConfigMap or Secret source; `values` None means it does not exist."""
    what = f'{source.kind} "{source.name}"'
    if values is None:
        if source.optional:
            return {}
        raise VolumeError(f"{what} not found")
    if source.items is None:
        return {key: FileContent(value.encode(), default_mode) for key, value in values.items()}
    files: dict[str, FileContent] = {}
    for item in source.items:
        if item.key not in values:
            if source.optional:
                continue
            raise VolumeError(f'key "{item.key}" not found in {what}')
        mode = default_mode if item.mode is None else item.mode
        files[item.path] = FileContent(values[item.key].encode(), mode)
    return files


def field_files(
    source: FieldsSource,
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    addresses: env.PodAddresses,
    node: env.NodeAllocatable,
    default_mode: int,
) -> dict[str, FileContent]:
    """The files of a downwardAPI source, from the same resolvers as env's fieldRef."""
    files: dict[str, FileContent] = {}
    for item in source.items:
        try:
            if item.field_path is not None:
                value = env.field_ref_value(pod, item.field_path, addresses)
            elif item.resource_field is not None:
                value = env.resource_field_value(pod, container, item.resource_field, node)
            else:
                raise VolumeError(f"downwardAPI item {item.path!r} names no field")
        except env.ContainerConfigError as error:
            raise VolumeError(str(error)) from error
        mode = default_mode if item.mode is None else item.mode
        files[item.path] = FileContent(value.encode(), mode)
    return files


def token_request(source: TokenSource, pod: Mapping[str, Any]) -> JsonDict:
    """The TokenRequest the kubelet sends: bound to the pod, so it dies with it, and so
    the API server knows which pod (and node) a request comes from."""
    metadata = pod.get("metadata") or {}
    spec: JsonDict = {
        "expirationSeconds": source.expiration_seconds,
        "boundObjectRef": {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": metadata.get("name", ""),
            "uid": metadata.get("uid", ""),
        },
    }
    if source.audience:
        spec["audiences"] = [source.audience]
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}


def token_refresh_at(issued_at: float, lifetime_seconds: float) -> float:
    """When a token issued at `issued_at` (the agent's clock) for `lifetime_seconds` (what
    the API server granted, in the TokenRequest's answer) is replaced."""
    lifetime = max(lifetime_seconds, 0.0)
    return issued_at + min(lifetime * TOKEN_REFRESH_FRACTION, TOKEN_MAX_AGE_SECONDS)

"""Container environment of the local node agent, resolved the way the kubelet does.

Pure: the caller fetches the Secrets and ConfigMaps named by
`referenced_sources` and hands them in; nothing here touches the API or the
process table.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

JsonDict = dict[str, Any]
SourceKind = Literal["secret", "configmap"]

CONFIG_ERROR_REASON = "CreateContainerConfigError"
_KEY_REFS: tuple[tuple[str, SourceKind], ...] = (
    ("secretKeyRef", "secret"),
    ("configMapKeyRef", "configmap"),
)


class ContainerConfigError(Exception):
    """The container cannot be started yet: a referenced object or key is missing, or a
    reference is malformed. The message names the object and key; the agent retries."""

    reason = CONFIG_ERROR_REASON


@dataclass(frozen=True)
class SourceRef:
    kind: SourceKind
    name: str


@dataclass(frozen=True)
class EnvSources:
    """The referenced Secrets and ConfigMaps of the pod's namespace as decoded string maps;
    a name mapped to None does not exist."""

    secrets: Mapping[str, Mapping[str, str] | None]
    config_maps: Mapping[str, Mapping[str, str] | None]

    def lookup(self, ref: SourceRef) -> Mapping[str, str] | None:
        table = self.secrets if ref.kind == "secret" else self.config_maps
        return table.get(ref.name)


@dataclass(frozen=True)
class PodAddresses:
    """Status fields a fieldRef may read before the agent has published them."""

    pod_ip: str
    host_ip: str


@dataclass(frozen=True)
class NodeAllocatable:
    """What a resourceFieldRef to an unset limit reads, as with the kubelet."""

    cpu: str = "1"
    memory: str = "1Gi"
    ephemeral_storage: str = "1Gi"


_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:\d+\.?\d*|\.\d+))(?P<exponent>[eE][+-]?\d+)?(?P<suffix>[a-zA-Z]{0,2})$"
)
_QUANTITY_SUFFIXES: dict[str, Decimal] = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}


def parse_quantity(text: str) -> Decimal:
    """A Kubernetes resource quantity ("500m", "1.5Gi", "1e3") as a number."""
    match = _QUANTITY.match(str(text).strip())
    if not match or match["suffix"] not in _QUANTITY_SUFFIXES:
        raise ContainerConfigError(f"{text!r} is not a resource quantity (e.g. 500m, 2, 128Mi)")
    value = Decimal(match["number"]) * _QUANTITY_SUFFIXES[match["suffix"]]
    if match["exponent"]:
        value *= Decimal(10) ** int(match["exponent"][1:])
    return value


def secret_values(secret: Mapping[str, Any]) -> dict[str, str]:
    """A Secret's `data` (base64, as the API serves it) decoded to strings."""
    data = secret.get("data") or {}
    return {
        key: base64.b64decode(value).decode("utf-8", errors="replace")
        for key, value in data.items()
    }


def config_map_values(config_map: Mapping[str, Any]) -> dict[str, str]:
    """A ConfigMap's `data` and `binaryData` (decoded) as one string map."""
    values: dict[str, str] = dict(config_map.get("data") or {})
    for key, value in (config_map.get("binaryData") or {}).items():
        values[key] = base64.b64decode(value).decode("utf-8", errors="replace")
    return values


def referenced_sources(container: Mapping[str, Any]) -> set[SourceRef]:
    """Every Secret and ConfigMap the container's env and envFrom refer to."""
    refs: set[SourceRef] = set()
    for entry in container.get("envFrom") or []:
        if entry.get("secretRef"):
            refs.add(SourceRef("secret", entry["secretRef"].get("name", "")))
        if entry.get("configMapRef"):
            refs.add(SourceRef("configmap", entry["configMapRef"].get("name", "")))
    for var in container.get("env") or []:
        value_from = var.get("valueFrom") or {}
        if value_from.get("secretKeyRef"):
            refs.add(SourceRef("secret", value_from["secretKeyRef"].get("name", "")))
        if value_from.get("configMapKeyRef"):
            refs.add(SourceRef("configmap", value_from["configMapKeyRef"].get("name", "")))
    return refs


def expand(text: str, lookup: Callable[[str], str | None]) -> str:
    """Kubernetes `$(VAR)` expansion: a defined VAR is replaced, an undefined one is left
    as written, `$$` is a literal `$` (so `$$(VAR)` yields `$(VAR)`). A port of the
    kubelet's third_party/forked/golang/expansion."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    while cursor < len(text):
        if text[cursor] == "$" and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            following = text[cursor + 1 :]
            if following[0] == "$":
                out.append("$")
                advance = 1
            elif following[0] == "(":
                closing = following.find(")")
                if closing == -1:
                    out.append("$(")
                    advance = 1
                else:
                    name = following[1:closing]
                    value = lookup(name)
                    out.append(value if value is not None else f"$({name})")
                    advance = closing + 1
            else:
                out.append("$" + following[0])
                advance = 1
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    out.append(text[checkpoint:])
    return "".join(out)


def field_ref_value(pod: Mapping[str, Any], field_path: str, addresses: PodAddresses) -> str:
    """The downward-API value of `field_path` for this pod."""
    metadata = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    simple: dict[str, str] = {
        "metadata.name": metadata.get("name", ""),
        "metadata.namespace": metadata.get("namespace", ""),
        "metadata.uid": metadata.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": addresses.pod_ip,
        "status.podIPs": addresses.pod_ip,
        "status.hostIP": addresses.host_ip,
        "status.hostIPs": addresses.host_ip,
    }
    if field_path in simple:
        return simple[field_path]
    for prefix, table in (
        ("metadata.labels", metadata.get("labels") or {}),
        ("metadata.annotations", metadata.get("annotations") or {}),
    ):
        key = _subscript(field_path, prefix)
        if key is not None:
            return str(table.get(key, ""))
    raise ContainerConfigError(
        f"fieldRef {field_path!r} is not supported by the local node agent (supported: "
        f"{', '.join(sorted(simple))}, metadata.labels['k'], metadata.annotations['k'])"
    )


def _subscript(field_path: str, prefix: str) -> str | None:
    """`metadata.labels['app']` -> `app` for prefix `metadata.labels`, else None."""
    if not (field_path.startswith(prefix + "[") and field_path.endswith("]")):
        return None
    inner = field_path[len(prefix) + 1 : -1]
    if len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\"":
        return inner[1:-1]
    return None


def resource_field_value(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    selector: Mapping[str, Any],
    node: NodeAllocatable,
) -> str:
    """A resourceFieldRef: the container's limit or request divided by the divisor and
    rounded up; an unset limit reads the node's allocatable, as with the kubelet."""
    resource = str(selector.get("resource", ""))
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or name not in ("cpu", "memory", "ephemeral-storage"):
        raise ContainerConfigError(
            f"resourceFieldRef {resource!r} is not supported (limits|requests . "
            "cpu|memory|ephemeral-storage)"
        )
    target_name = selector.get("containerName") or container.get("name")
    target = next(
        (
            c
            for c in (pod.get("spec") or {}).get("containers") or []
            if c.get("name") == target_name
        ),
        container,
    )
    resources = (target.get("resources") or {}).get(kind) or {}
    fallback = {"cpu": node.cpu, "memory": node.memory, "ephemeral-storage": node.ephemeral_storage}
    raw = resources.get(name, fallback[name] if kind == "limits" else "0")
    divisor = parse_quantity(str(selector.get("divisor") or "1"))
    if divisor <= 0:
        raise ContainerConfigError(f"resourceFieldRef {resource!r}: divisor must be positive")
    return str(math.ceil(parse_quantity(str(raw)) / divisor))


def resolve_container_env(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    sources: EnvSources,
    addresses: PodAddresses,
    node: NodeAllocatable | None = None,
) -> dict[str, str]:
    """The container's environment, in kubelet order: envFrom entries first (later ones
    win), then env entries, each `value` expanded against what is defined so far.
    Raises ContainerConfigError naming the missing object or key."""
    env: dict[str, str] = {}
    for entry in container.get("envFrom") or []:
        env.update(_env_from_entry(entry, sources))
    for var in container.get("env") or []:
        name = var.get("name", "")
        if "valueFrom" in var and var["valueFrom"] is not None:
            if var["valueFrom"].get("resourceFieldRef"):
                env[name] = resource_field_value(
                    pod, container, var["valueFrom"]["resourceFieldRef"], node or NodeAllocatable()
                )
                continue
            value = _value_from(pod, name, var["valueFrom"], sources, addresses)
            if value is None:
                continue
            env[name] = value
        else:
            env[name] = expand(str(var.get("value") or ""), env.get)
    return env


def _env_from_entry(entry: Mapping[str, Any], sources: EnvSources) -> dict[str, str]:
    prefix = entry.get("prefix") or ""
    if entry.get("secretRef"):
        ref, kind_label = entry["secretRef"], "secret"
        values = sources.lookup(SourceRef("secret", ref.get("name", "")))
    elif entry.get("configMapRef"):
        ref, kind_label = entry["configMapRef"], "configmap"
        values = sources.lookup(SourceRef("configmap", ref.get("name", "")))
    else:
        return {}
    if values is None:
        if ref.get("optional"):
            return {}
        raise ContainerConfigError(f'{kind_label} "{ref.get("name", "")}" not found (envFrom)')
    # The kubelet skips keys that cannot be variable names; so do we.
    return {prefix + key: value for key, value in values.items() if key and "=" not in key}


def _value_from(
    pod: Mapping[str, Any],
    var_name: str,
    value_from: Mapping[str, Any],
    sources: EnvSources,
    addresses: PodAddresses,
) -> str | None:
    if value_from.get("fieldRef"):
        return field_ref_value(pod, value_from["fieldRef"].get("fieldPath", ""), addresses)
    for field, kind in _KEY_REFS:
        selector = value_from.get(field)
        if not selector:
            continue
        name, key, label = selector.get("name", ""), selector.get("key", ""), kind
        values = sources.lookup(SourceRef(kind, name))
        if values is None or key not in values:
            if selector.get("optional"):
                return None
            what = (
                f'{label} "{name}" not found'
                if values is None
                else (f'key "{key}" not found in {label} "{name}"')
            )
            raise ContainerConfigError(
                f"{what} (env {var_name} needs {label} {name!r} key {key!r})"
            )
        return values[key]
    raise ContainerConfigError(
        f"env {var_name}: valueFrom {sorted(value_from)} is not supported by the local node agent "
        "(supported: fieldRef, resourceFieldRef, secretKeyRef, configMapKeyRef)"
    )


def expand_command(container: Mapping[str, Any], env: Mapping[str, str]) -> list[str] | None:
    """command + args with `$(VAR)` expanded against the container env; None when the
    container has no command (the agent cannot fall back on an image's entrypoint)."""
    command: Sequence[str] = container.get("command") or []
    if not command:
        return None
    args: Sequence[str] = container.get("args") or []
    return [expand(part, env.get) for part in [*command, *args]]


def process_env(base: Mapping[str, str], container_env: Mapping[str, str]) -> dict[str, str]:
    """The process environment: the agent's minimal base, overridden by the container's."""
    return {**base, **container_env}

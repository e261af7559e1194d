"""Env resolution of the local node agent, as the kubelet resolves it."""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

import pytest

from localcluster.nodeagent.env import (
    ContainerConfigError,
    EnvSources,
    NodeAllocatable,
    PodAddresses,
    SourceRef,
    config_map_values,
    expand,
    expand_command,
    field_ref_value,
    parse_quantity,
    process_env,
    referenced_sources,
    resolve_container_env,
    secret_values,
)

ADDRESSES = PodAddresses(pod_ip="127.0.0.7", host_ip="127.0.0.1")
POD: dict[str, Any] = {
    "metadata": {
        "name": "web-1",
        "namespace": "shop",
        "uid": "u-123",
        "labels": {"app": "web", "tier": "front"},
        "annotations": {"note": "hi"},
    },
    "spec": {"nodeName": "workerfleet-node", "serviceAccountName": "runner"},
}
NO_SOURCES = EnvSources(secrets={}, config_maps={})


def resolve(container: dict[str, Any], sources: EnvSources = NO_SOURCES) -> dict[str, str]:
    return resolve_container_env(POD, container, sources, ADDRESSES)


def test_expand_replaces_defined_keeps_undefined_and_unescapes() -> None:
    values = {"A": "x", "B": "y"}
    assert expand("$(A)-$(B)/$(C)", values.get) == "x-y/$(C)"
    assert expand("$$(A) costs $$5", values.get) == "$(A) costs $5"
    assert expand("tail $", values.get) == "tail $"
    assert expand("open $(A", values.get) == "open $(A"
    assert expand("$A", values.get) == "$A"


def test_values_expand_against_earlier_variables_only() -> None:
    env = resolve(
        {
            "env": [
                {"name": "HOST", "value": "db"},
                {"name": "DSN", "value": "postgres://$(HOST)/$(LATER)"},
                {"name": "LATER", "value": "app"},
            ]
        }
    )
    assert env == {"HOST": "db", "DSN": "postgres://db/$(LATER)", "LATER": "app"}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("metadata.name", "web-1"),
        ("metadata.namespace", "shop"),
        ("metadata.uid", "u-123"),
        ("status.podIP", "127.0.0.7"),
        ("status.hostIP", "127.0.0.1"),
        ("spec.nodeName", "workerfleet-node"),
        ("spec.serviceAccountName", "runner"),
        ("metadata.labels['tier']", "front"),
        ('metadata.annotations["note"]', "hi"),
        ("metadata.labels['absent']", ""),
    ],
)
def test_field_refs(path: str, expected: str) -> None:
    assert field_ref_value(POD, path, ADDRESSES) == expected


def test_unsupported_field_ref_is_a_config_error_naming_the_path() -> None:
    with pytest.raises(ContainerConfigError, match=r"spec\.priority"):
        field_ref_value(POD, "spec.priority", ADDRESSES)


def test_secret_and_config_map_key_refs() -> None:
    sources = EnvSources(
        secrets={"db": {"dsn": "postgres://x"}}, config_maps={"cfg": {"q": "emails"}}
    )
    env = resolve(
        {
            "env": [
                {"name": "DSN", "valueFrom": {"secretKeyRef": {"name": "db", "key": "dsn"}}},
                {"name": "QUEUE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "q"}}},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            ]
        },
        sources,
    )
    assert env == {"DSN": "postgres://x", "QUEUE": "emails", "POD_IP": "127.0.0.7"}


def test_missing_secret_names_secret_and_key() -> None:
    container = {
        "env": [{"name": "DSN", "valueFrom": {"secretKeyRef": {"name": "db", "key": "dsn"}}}]
    }
    with pytest.raises(ContainerConfigError) as raised:
        resolve(container, EnvSources(secrets={"db": None}, config_maps={}))
    assert 'secret "db" not found' in str(raised.value)
    assert "'dsn'" in str(raised.value)
    assert raised.value.reason == "CreateContainerConfigError"


def test_missing_key_of_existing_secret_names_the_key() -> None:
    container = {
        "env": [{"name": "DSN", "valueFrom": {"secretKeyRef": {"name": "db", "key": "dsn"}}}]
    }
    with pytest.raises(ContainerConfigError, match=r'key "dsn" not found in secret "db"'):
        resolve(container, EnvSources(secrets={"db": {"other": "1"}}, config_maps={}))


def test_optional_refs_are_skipped_when_missing() -> None:
    env = resolve(
        {
            "env": [
                {
                    "name": "A",
                    "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k", "optional": True}},
                },
                {
                    "name": "B",
                    "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": True}},
                },
            ],
            "envFrom": [{"configMapRef": {"name": "gone", "optional": True}}],
        },
        EnvSources(secrets={"s": {"other": "1"}}, config_maps={"c": None, "gone": None}),
    )
    assert env == {}


def test_env_from_with_prefix_then_env_overrides() -> None:
    sources = EnvSources(
        secrets={"creds": {"USER": "u", "PASS": "p", "bad=key": "x"}},
        config_maps={"cfg": {"USER": "from-cm", "LEVEL": "debug"}},
    )
    env = resolve(
        {
            "envFrom": [
                {"secretRef": {"name": "creds"}},
                {"configMapRef": {"name": "cfg"}, "prefix": "CFG_"},
            ],
            "env": [{"name": "PASS", "value": "override-$(USER)"}],
        },
        sources,
    )
    assert env == {"USER": "u", "PASS": "override-u", "CFG_USER": "from-cm", "CFG_LEVEL": "debug"}


def test_required_env_from_missing_is_a_config_error() -> None:
    with pytest.raises(ContainerConfigError, match=r'secret "creds" not found'):
        resolve(
            {"envFrom": [{"secretRef": {"name": "creds"}}]},
            EnvSources(secrets={"creds": None}, config_maps={}),
        )


def test_referenced_sources_lists_every_secret_and_config_map() -> None:
    container = {
        "envFrom": [{"secretRef": {"name": "a"}}, {"configMapRef": {"name": "b"}}],
        "env": [
            {"name": "X", "valueFrom": {"secretKeyRef": {"name": "c", "key": "k"}}},
            {"name": "Y", "valueFrom": {"configMapKeyRef": {"name": "d", "key": "k"}}},
            {"name": "Z", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "W", "value": "plain"},
        ],
    }
    assert referenced_sources(container) == {
        SourceRef("secret", "a"),
        SourceRef("configmap", "b"),
        SourceRef("secret", "c"),
        SourceRef("configmap", "d"),
    }


def test_secret_and_config_map_decoding() -> None:
    encoded = base64.b64encode(b"s3cret").decode()
    assert secret_values({"data": {"pw": encoded}}) == {"pw": "s3cret"}
    assert secret_values({}) == {}
    assert config_map_values({"data": {"a": "1"}, "binaryData": {"b": encoded}}) == {
        "a": "1",
        "b": "s3cret",
    }


def test_command_and_args_expand_with_container_env() -> None:
    container = {
        "command": ["server", "--bind=$(POD_IP)"],
        "args": ["--name", "$(NAME)", "$$(NAME)"],
    }
    argv = expand_command(container, {"POD_IP": "127.0.0.7", "NAME": "w"})
    assert argv == ["server", "--bind=127.0.0.7", "--name", "w", "$(NAME)"]


def test_no_command_means_none() -> None:
    assert expand_command({"args": ["x"], "image": "busybox"}, {}) is None


def test_process_env_is_base_overridden_by_container() -> None:
    base = {
        "PATH": "/venv/bin:/usr/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
    }
    assert process_env(base, {"LANG": "de_DE.UTF-8", "X": "1"}) == {
        "PATH": "/venv/bin:/usr/bin",
        "HOME": "/root",
        "LANG": "de_DE.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "X": "1",
    }


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Decimal("0.5")),
        ("2", Decimal(2)),
        ("1.5Gi", Decimal(1.5 * 2**30)),
        ("128Mi", Decimal(128 * 2**20)),
        ("1k", Decimal(1000)),
        ("1e3", Decimal(1000)),
        ("1E", Decimal(10**18)),
    ],
)
def test_quantities(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


def test_bad_quantity_is_a_config_error() -> None:
    with pytest.raises(ContainerConfigError, match="12 cores"):
        parse_quantity("12 cores")


def test_resource_field_refs_read_limits_requests_or_node_allocatable() -> None:
    container = {
        "name": "main",
        "resources": {"limits": {"memory": "256Mi"}, "requests": {"cpu": "250m"}},
        "env": [
            {
                "name": "MEM_MI",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
            },
            {"name": "CPU_LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {"name": "CPU_REQ", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu"}}},
            {
                "name": "CPU_REQ_M",
                "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}},
            },
        ],
    }
    pod = {**POD, "spec": {**POD["spec"], "containers": [container]}}
    env = resolve_container_env(pod, container, NO_SOURCES, ADDRESSES, NodeAllocatable(cpu="4"))
    assert env == {"MEM_MI": "256", "CPU_LIMIT": "4", "CPU_REQ": "1", "CPU_REQ_M": "250"}


def test_unsupported_resource_field_ref_names_the_resource() -> None:
    container = {
        "name": "c",
        "env": [{"name": "X", "valueFrom": {"resourceFieldRef": {"resource": "limits.gpu"}}}],
    }
    with pytest.raises(ContainerConfigError, match=r"limits\.gpu"):
        resolve(container)

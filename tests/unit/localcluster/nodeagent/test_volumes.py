"""The node agent's volume plans: what is materialized, the files, the binds, token refresh."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from localcluster.nodeagent import mounts, volumes
from localcluster.nodeagent.env import NodeAllocatable, PodAddresses

# What the ServiceAccount admission plugin adds to a pod that does not opt out.
KUBE_API_ACCESS: dict[str, Any] = {
    "name": "kube-api-access-x7k2p",
    "projected": {
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {
                "configMap": {
                    "name": "kube-root-ca.crt",
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                }
            },
            {
                "downwardAPI": {
                    "items": [
                        {"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}
                    ]
                }
            },
        ],
    },
}
SA_MOUNT = {
    "name": "kube-api-access-x7k2p",
    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
    "readOnly": True,
}


def pod(*volume_list: dict[str, Any], account: str = "runner") -> dict[str, Any]:
    return {
        "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1", "labels": {"a": "b"}},
        "spec": {"serviceAccountName": account, "volumes": list(volume_list)},
    }


def test_the_admission_plugins_projection_is_planned_source_by_source() -> None:
    plans = volumes.plan_volumes(pod(KUBE_API_ACCESS, {"name": "tmp", "emptyDir": {}}))
    assert list(plans) == ["kube-api-access-x7k2p"]  # emptyDir is not materialized
    plan = plans["kube-api-access-x7k2p"]
    assert plan.default_mode == 0o644
    token, ca, namespace = plan.sources
    assert token == volumes.TokenSource("runner", "token", 3607, None, None)
    assert ca == volumes.KeysSource(
        "configmap", "kube-root-ca.crt", (volumes.KeyItem("ca.crt", "ca.crt", None),), False
    )
    assert isinstance(namespace, volumes.FieldsSource)
    assert namespace.items[0].field_path == "metadata.namespace"


def test_a_token_request_is_bound_to_the_pod_with_the_sources_lifetime() -> None:
    source = volumes.TokenSource("runner", "token", 3607, "vault", None)
    request = volumes.token_request(source, pod())
    assert request["spec"] == {
        "expirationSeconds": 3607,
        "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "web-1", "uid": "u-1"},
        "audiences": ["vault"],
    }


def test_short_lifetimes_are_raised_to_the_api_servers_minimum() -> None:
    short = dict(KUBE_API_ACCESS)
    short["projected"] = {"sources": [{"serviceAccountToken": {"path": "t"}}]}
    (source,) = volumes.plan_volumes(pod(short))["kube-api-access-x7k2p"].sources
    assert isinstance(source, volumes.TokenSource)
    assert source.expiration_seconds == volumes.DEFAULT_TOKEN_SECONDS
    assert source.service_account == "runner"


def test_tokens_are_refreshed_at_80_percent_of_their_life_and_at_least_daily() -> None:
    assert volumes.token_refresh_at(1000.0, 3600) == pytest.approx(1000.0 + 2880)
    a_year = 365 * 24 * 3600.0
    assert volumes.token_refresh_at(0.0, a_year) == volumes.TOKEN_MAX_AGE_SECONDS
    assert volumes.token_refresh_at(50.0, -10.0) == 50.0  # nothing granted: at once


def test_plain_config_map_secret_and_downward_volumes_are_planned() -> None:
    plans = volumes.plan_volumes(
        pod(
            {"name": "conf", "configMap": {"name": "settings", "defaultMode": 0o600}},
            {"name": "creds", "secret": {"secretName": "db", "optional": True}},
            {"name": "meta", "downwardAPI": {"items": [{"path": "labels/a", "fieldRef": {}}]}},
        )
    )
    assert plans["conf"].sources == (volumes.KeysSource("configmap", "settings", None, False),)
    assert plans["conf"].default_mode == 0o600
    assert plans["creds"].sources == (volumes.KeysSource("secret", "db", None, True),)
    assert set(plans) == {"conf", "creds", "meta"}


@pytest.mark.parametrize("path", ["/etc/passwd", "../escape", "a/../../b", ""])
def test_paths_leaving_the_volume_are_refused(path: str) -> None:
    volume = {"name": "v", "configMap": {"name": "c", "items": [{"key": "k", "path": path}]}}
    with pytest.raises(volumes.VolumeError, match="must be relative"):
        volumes.plan_volumes(pod(volume))


def test_an_unsupported_projected_source_is_refused_by_name() -> None:
    volume = {"name": "v", "projected": {"sources": [{"clusterTrustBundle": {}}]}}
    with pytest.raises(volumes.VolumeError, match="clusterTrustBundle"):
        volumes.plan_volumes(pod(volume))


def test_binds_cover_materialized_mounts_only_with_subpaths(tmp_path: Path) -> None:
    plans = volumes.plan_volumes(
        pod(KUBE_API_ACCESS, {"name": "conf", "configMap": {"name": "settings"}})
    )
    container = {
        "volumeMounts": [
            SA_MOUNT,
            {"name": "conf", "mountPath": "/etc/app/app.yaml", "subPath": "app.yaml"},
            {"name": "tmp", "mountPath": "/tmp"},
        ]
    }
    binds = volumes.container_binds(container, plans, tmp_path)
    assert binds == [
        volumes.Bind(
            tmp_path / "kube-api-access-x7k2p", "/var/run/secrets/kubernetes.io/serviceaccount"
        ),
        volumes.Bind(tmp_path / "conf" / "app.yaml", "/etc/app/app.yaml"),
    ]


def test_key_files_follow_items_modes_and_optional() -> None:
    items = (volumes.KeyItem("ca.crt", "ca.crt", 0o400), volumes.KeyItem("x", "x", None))
    source = volumes.KeysSource("configmap", "kube-root-ca.crt", items, False)
    with pytest.raises(volumes.VolumeError, match='key "x" not found in configmap'):
        volumes.key_files(source, {"ca.crt": "PEM"}, 0o644)
    with pytest.raises(volumes.VolumeError, match=r'configmap "kube-root-ca\.crt" not found'):
        volumes.key_files(source, None, 0o644)
    files = volumes.key_files(source, {"ca.crt": "PEM", "x": "y"}, 0o644)
    assert files == {
        "ca.crt": volumes.FileContent(b"PEM", 0o400),
        "x": volumes.FileContent(b"y", 0o644),
    }
    optional = volumes.KeysSource("secret", "s", None, True)
    assert volumes.key_files(optional, None, 0o644) == {}
    assert volumes.key_files(optional, {"a": "1"}, 0o600) == {"a": volumes.FileContent(b"1", 0o600)}


def test_downward_files_resolve_like_env_field_refs() -> None:
    source = volumes.FieldsSource(
        (
            volumes.FieldItem("namespace", "metadata.namespace", None, None),
            volumes.FieldItem("a", "metadata.labels['a']", None, 0o400),
        )
    )
    files = volumes.field_files(
        source, pod(), {}, PodAddresses("127.0.0.9", "127.0.0.1"), NodeAllocatable(), 0o644
    )
    assert files == {
        "namespace": volumes.FileContent(b"shop", 0o644),
        "a": volumes.FileContent(b"b", 0o400),
    }
    unsupported = volumes.FieldsSource((volumes.FieldItem("x", "spec.unknown", None, None),))
    with pytest.raises(volumes.VolumeError, match=r"spec\.unknown"):
        volumes.field_files(unsupported, pod(), {}, PodAddresses("", ""), NodeAllocatable(), 0o644)


def test_a_command_with_binds_runs_under_unshare_and_execs_the_command() -> None:
    tools = mounts.Tools("/usr/bin/unshare", "/bin/sh", "/usr/bin/mount")
    argv = ["/venv/bin/workerfleet-operator", "-n", "a"]
    assert mounts.wrap_command(argv, [], tools) == argv
    wrapped = mounts.wrap_command(argv, [volumes.Bind(Path("/state/v/sa"), "/var/run/sa")], tools)
    assert wrapped[:5] == ["/usr/bin/unshare", "--mount", "--propagation", "private", "--"]
    assert wrapped[5:7] == ["/bin/sh", "-c"]
    assert "exec" in wrapped[7]
    assert wrapped[8:] == ["sh", "/usr/bin/mount", "1", "/state/v/sa", "/var/run/sa", "--", *argv]

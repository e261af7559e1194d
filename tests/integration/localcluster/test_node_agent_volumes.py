"""What in-cluster clients need from the node agent: the projected service-account token
(bound to the pod, refreshed before it expires), the cluster CA from `kube-root-ca.crt`,
the namespace, KUBERNETES_SERVICE_HOST/PORT, and no token where the pod opts out."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from localcluster.control_plane import LocalCluster
from localcluster.nodeagent.api import KubeApi
from localcluster.nodeagent.env import NodeAllocatable, PodAddresses
from localcluster.nodeagent.projection import PodVolumes
from localcluster.waiting import wait_for
from tests.integration.localcluster.node_agent_support import container_status, get_pod, pod_if

pytestmark = pytest.mark.cluster

POD_TIMEOUT_SECONDS = 90.0
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

# Run inside the pod: what an in-cluster client sees, and who the API server says it is.
IN_CLUSTER_CLIENT = textwrap.dedent(
    f"""
    import json, os, sys
    from kubernetes import client, config
    seen = {{
        "host": os.environ.get("KUBERNETES_SERVICE_HOST"),
        "port": os.environ.get("KUBERNETES_SERVICE_PORT"),
        "files": sorted(os.listdir({SERVICE_ACCOUNT_DIR!r}))
        if os.path.isdir({SERVICE_ACCOUNT_DIR!r}) else [],
    }}
    if "token" in seen["files"]:
        seen["namespace"] = open({SERVICE_ACCOUNT_DIR!r} + "/namespace").read()
        config.load_incluster_config()
        review = client.AuthenticationV1Api().create_self_subject_review(
            client.V1SelfSubjectReview()
        )
        seen["user"] = review.status.user_info.username
        seen["extra"] = review.status.user_info.extra
        try:
            open({SERVICE_ACCOUNT_DIR!r} + "/token", "a").close()
            seen["writable"] = True
        except OSError:
            seen["writable"] = False
    json.dump(seen, open(os.environ["OUT"], "w"))
    """
)


def run_pod(
    cluster: LocalCluster, namespace: str, name: str, out: Path, **spec: Any
) -> dict[str, Any]:
    """Runs the in-cluster client in a pod to completion; what it saw."""
    script = out.with_suffix(".py")
    script.write_text(IN_CLUSTER_CLIENT)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "client",
                    "image": "example.invalid/not-pulled:1",
                    "command": ["python", str(script)],
                    "env": [{"name": "OUT", "value": str(out)}],
                }
            ],
            **spec,
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))
    done = wait_for(
        f"pod {name} to finish",
        lambda: pod_if(
            cluster,
            namespace,
            name,
            lambda p: (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"),
        ),
        timeout=POD_TIMEOUT_SECONDS,
        describe=lambda: json.dumps(container_status(get_pod(cluster, namespace, name) or {})),
    )
    log = cluster.logs_dir / f"{namespace}_{name}_client.log"
    assert done["status"]["phase"] == "Succeeded", log.read_text()
    seen: dict[str, Any] = json.loads(out.read_text())
    return seen


def test_a_pod_authenticates_as_its_service_account_with_a_token_bound_to_it(
    kube_cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    seen = run_pod(kube_cluster, namespace, "in-cluster", tmp_path / "seen.json")
    apiserver = json.loads(kube_cluster.kubectl("config", "view", "-o", "json").stdout)
    server = apiserver["clusters"][0]["cluster"]["server"]
    assert f"https://{seen['host']}:{seen['port']}" == server
    assert seen["files"] == ["ca.crt", "namespace", "token"]
    assert seen["namespace"] == namespace
    assert seen["user"] == f"system:serviceaccount:{namespace}:default"
    # The token is bound to the pod: the API server knows which pod is calling.
    assert seen["extra"]["authentication.kubernetes.io/pod-name"] == ["in-cluster"]
    assert seen["writable"] is False
    # Only inside the pod's own mount namespace.
    assert not Path(SERVICE_ACCOUNT_DIR, "token").exists()


def test_a_pod_that_opts_out_gets_no_token(
    kube_cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    seen = run_pod(
        kube_cluster,
        namespace,
        "no-token",
        tmp_path / "seen.json",
        automountServiceAccountToken=False,
    )
    assert seen["files"] == []
    assert "user" not in seen
    assert seen["host"] == "127.0.0.1"  # the variables are there; the credentials are not


def test_tokens_are_replaced_before_they_expire(
    kube_cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    """The agent's projection code against the real API server, on a clock of our own:
    nothing changes before the refresh time, a new token is written after it."""
    sleeper = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "holder", "namespace": namespace},
        "spec": {
            "containers": [{"name": "c", "image": "x", "command": ["sleep", "600"]}],
            "terminationGracePeriodSeconds": 1,
        },
    }
    kube_cluster.kubectl("apply", "-f", "-", input=json.dumps(sleeper))
    pod = wait_for(
        "pod holder running",
        lambda: pod_if(
            kube_cluster,
            namespace,
            "holder",
            lambda p: (p.get("status") or {}).get("phase") == "Running",
        ),
        timeout=POD_TIMEOUT_SECONDS,
    )
    now = [1_000_000.0]
    # The agent's own identity: the Node authorizer lets it mint tokens for its pods only.
    api = KubeApi(str(kube_cluster.state_dir / "node-agent.kubeconfig"))
    projection = PodVolumes(
        api,
        pod,
        tmp_path,
        PodAddresses(pod["status"]["podIP"], "127.0.0.1"),
        NodeAllocatable(),
        clock=lambda: now[0],
    )
    container = pod["spec"]["containers"][0]
    (bind,) = projection.binds(container)
    assert bind.target == SERVICE_ACCOUNT_DIR
    token_file = bind.source / "token"
    first = token_file.read_text()
    assert first.count(".") == 2  # a JWT
    assert oct(os.stat(token_file).st_mode & 0o777) == "0o644"

    # kube-api-access asks for 3607 s: replaced after 80% of that, not before.
    now[0] += 0.79 * 3607
    projection.refresh_if_due()
    assert token_file.read_text() == first
    now[0] += 0.02 * 3607
    projection.refresh_if_due()
    second = token_file.read_text()
    assert second != first
    assert second.count(".") == 2
    projection.remove()
    assert not bind.source.exists()

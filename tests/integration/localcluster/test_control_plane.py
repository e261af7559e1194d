"""The local cluster is real Kubernetes: CRDs, schema validation, watches and
admission behave as they do in production."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from localcluster.control_plane import LocalCluster
from localcluster.waiting import wait_for

GROUP = "harness.workerfleet.dev"

CRD_TEMPLATE = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {plural}.{group}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: {plural}, singular: {singular}, kind: {kind}}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {{type: integer, minimum: 1, maximum: 10}}
"""


@pytest.fixture
def widget_crd(kube_cluster: LocalCluster) -> Iterator[dict[str, str]]:
    suffix = uuid.uuid4().hex[:8]
    names = {
        "group": GROUP,
        "plural": f"widgets{suffix}",
        "singular": f"widget{suffix}",
        "kind": f"Widget{suffix.capitalize()}",
    }
    kube_cluster.kubectl("apply", "-f", "-", input=CRD_TEMPLATE.format(**names))
    yield names
    kube_cluster.kubectl("delete", "crd", f"{names['plural']}.{GROUP}", "--wait=false", check=False)


def _widget(kind: str, name: str, size: object) -> str:
    return json.dumps(
        {
            "apiVersion": f"{GROUP}/v1",
            "kind": kind,
            "metadata": {"name": name},
            "spec": {"size": size},
        }
    )


def test_crd_becomes_established_and_the_server_enforces_its_schema(
    kube_cluster: LocalCluster, widget_crd: dict[str, str], namespace: str
) -> None:
    crd = f"{widget_crd['plural']}.{GROUP}"
    kube_cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")

    kube_cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=_widget(widget_crd["kind"], "good", 3)
    )
    refused = kube_cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        check=False,
        input=_widget(widget_crd["kind"], "bad", 99),
    )
    assert refused.returncode != 0
    assert "spec.size" in refused.stderr
    assert "should be less than or equal to 10" in refused.stderr
    wrong_type = kube_cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        check=False,
        input=_widget(widget_crd["kind"], "worse", "three"),
    )
    assert wrong_type.returncode != 0
    assert "spec.size" in wrong_type.stderr

    listed = json.loads(
        kube_cluster.kubectl("get", widget_crd["plural"], "-n", namespace, "-o", "json").stdout
    )
    assert [item["metadata"]["name"] for item in listed["items"]] == ["good"]


def test_list_and_watch_see_changes(
    kube_cluster: LocalCluster, widget_crd: dict[str, str], namespace: str
) -> None:
    kube_cluster.kubectl(
        "wait",
        "--for=condition=Established",
        f"crd/{widget_crd['plural']}.{GROUP}",
        "--timeout=60s",
    )
    # The kubernetes client is untyped: its objects are Any here.
    config: Any = kubernetes.config
    api_client = config.new_client_from_config(config_file=str(kube_cluster.kubeconfig))
    objects: Any = kubernetes.client.CustomObjectsApi(api_client)
    initial = objects.list_namespaced_custom_object(GROUP, "v1", namespace, widget_crd["plural"])
    assert initial["items"] == []

    seen: list[tuple[str, str, int]] = []
    watch_module: Any = kubernetes.watch
    watch = watch_module.Watch()

    def follow() -> None:
        stream: Any = watch.stream(
            objects.list_namespaced_custom_object,
            GROUP,
            "v1",
            namespace,
            widget_crd["plural"],
            resource_version=initial["metadata"]["resourceVersion"],
            timeout_seconds=60,
        )
        for event in stream:
            body = event["object"]
            seen.append((event["type"], body["metadata"]["name"], body["spec"]["size"]))
            if event["type"] == "DELETED":
                watch.stop()

    watcher = threading.Thread(target=follow, daemon=True)
    watcher.start()
    kube_cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=_widget(widget_crd["kind"], "w1", 1)
    )
    kube_cluster.kubectl(
        "patch",
        widget_crd["plural"],
        "w1",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec": {"size": 2}}',
    )
    kube_cluster.kubectl("delete", widget_crd["plural"], "w1", "-n", namespace)
    watcher.join(timeout=60)
    api_client.close()
    assert seen == [("ADDED", "w1", 1), ("MODIFIED", "w1", 2), ("DELETED", "w1", 2)]


PRIVILEGED_POD = """
apiVersion: v1
kind: Pod
metadata: {name: privileged}
spec:
  containers:
  - name: main
    image: busybox
    command: [sleep, "3600"]
    securityContext: {privileged: true}
"""


def test_pod_security_admission_refuses_a_privileged_pod(
    kube_cluster: LocalCluster, namespace: str
) -> None:
    kube_cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    refused = kube_cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", check=False, input=PRIVILEGED_POD
    )
    assert refused.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in refused.stderr
    assert "privileged" in refused.stderr
    pods = kube_cluster.kubectl("get", "pods", "-n", namespace, "-o", "name").stdout
    assert pods.strip() == ""


def test_the_node_is_ready_and_pods_can_be_created(kube_cluster: LocalCluster) -> None:
    conditions = wait_for(
        "the node agent's node to be Ready",
        lambda: json.loads(
            kube_cluster.kubectl(
                "get", "node", "workerfleet-node", "-o", "jsonpath={.status.conditions}"
            ).stdout
        ),
    )
    ready = {c["type"]: c["status"] for c in conditions}
    assert ready["Ready"] == "True"

"""The pytest plugin that gives tests the local Kubernetes cluster (`localcluster`), the
CRDs on it and the operator serving a test's namespace.

The session reuses a cluster that is already up (``make cluster-up``) and leaves it
running; otherwise it starts one and stops it at the end of the session
(``WORKERFLEET_KEEP_CLUSTER=1`` keeps it).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcluster.control_plane import REPO_ROOT, LocalCluster
from localcluster.operator_process import OperatorProcess
from localcluster.waiting import wait_for

CRD_DIR = REPO_ROOT / "crds"


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[LocalCluster]:
    cluster = LocalCluster.from_environment()
    already_up = cluster.is_up()
    cluster.up()
    try:
        yield cluster
    finally:
        if not already_up and os.environ.get("WORKERFLEET_KEEP_CLUSTER") != "1":
            cluster.down()


@pytest.fixture
def namespace(kube_cluster: LocalCluster) -> Iterator[str]:
    """A fresh namespace for this test, deleted (without waiting) afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    kube_cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        kube_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def crds(kube_cluster: LocalCluster) -> LocalCluster:
    """The CRDs from crds/, applied, Established and served by discovery."""
    kube_cluster.kubectl("apply", "-f", str(CRD_DIR))
    kube_cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "crd/workerpools.workerfleet.dev",
        "crd/monitors.workerfleet.dev",
        "--timeout=60s",
    )
    # Established comes before discovery lists the new resources: on a fresh cluster
    # kubectl can still answer "doesn't have a resource type" for a moment.
    wait_for(
        "discovery to serve the workerfleet category",
        lambda: kube_cluster.kubectl("get", "workerfleet", "-A", check=False).returncode == 0,
        timeout=60,
    )
    return kube_cluster


@pytest.fixture
def operator(crds: LocalCluster, namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    """The operator serving only this test's namespace; its log is printed on failure."""
    process = OperatorProcess(crds.kubeconfig, namespace, tmp_path / "operator.log")
    try:
        process.wait_ready()
        yield process
    finally:
        code = process.stop()
        print(f"--- operator log (exit {code}) ---\n{process.logs()[-20000:]}")

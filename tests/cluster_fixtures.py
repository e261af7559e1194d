"""Fixtures for the local Kubernetes cluster (see tests/cluster/control_plane.py).

The session reuses a cluster that is already up (``make cluster-up``) and leaves
it running; otherwise it starts one and stops it at the end of the session.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.control_plane import DEFAULT_STATE_DIR, LocalCluster


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[LocalCluster]:
    cluster = LocalCluster(Path(os.environ.get("WORKERFLEET_CLUSTER_DIR", DEFAULT_STATE_DIR)))
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

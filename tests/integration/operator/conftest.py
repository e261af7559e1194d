"""Fixtures of the operator's integration tests: CRDs installed once, an operator per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.control_plane import LocalCluster
from tests.cluster.waiting import wait_for
from tests.integration.operator.support import CRD_DIR, OperatorProcess


@pytest.fixture(scope="session")
def crds(kube_cluster: LocalCluster) -> LocalCluster:
    """The CRDs from crds/, applied and Established."""
    kube_cluster.kubectl("apply", "-f", str(CRD_DIR))
    kube_cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "crd/workerpools.workerfleet.dev",
        "crd/monitors.workerfleet.dev",
        "--timeout=60s",
    )
    return kube_cluster


@pytest.fixture
def operator(crds: LocalCluster, namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    """The operator serving only this test's namespace; its log is printed on failure."""
    process = OperatorProcess(crds, namespace, tmp_path / "operator.log")
    wait_for(
        "the operator's /readyz",
        lambda: process.process.poll() is None and process.get("/readyz")[0] == 200,
        timeout=60,
        describe=lambda: process.logs()[-2000:],
    )
    try:
        yield process
    finally:
        code = process.stop()
        print(f"--- operator log (exit {code}) ---\n{process.logs()[-20000:]}")

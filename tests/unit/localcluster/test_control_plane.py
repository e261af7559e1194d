"""Which cluster `make cluster-up`, the demo and the tests share."""

from __future__ import annotations

from pathlib import Path

import pytest

import localcluster
from localcluster.control_plane import DEFAULT_STATE_DIR, REPO_ROOT, LocalCluster


def test_the_state_directory_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WORKERFLEET_CLUSTER_DIR", str(tmp_path / "mine"))
    cluster = LocalCluster.from_environment()
    assert cluster.state_dir == tmp_path / "mine"
    assert cluster.kubeconfig == tmp_path / "mine" / "kubeconfig"


def test_without_the_variable_it_is_dot_cluster_in_the_checkout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WORKERFLEET_CLUSTER_DIR", raising=False)
    assert LocalCluster.from_environment().state_dir == DEFAULT_STATE_DIR == REPO_ROOT / ".cluster"
    assert Path(localcluster.__file__).resolve().parent.parent == REPO_ROOT

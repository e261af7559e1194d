"""`up` and `down` of a second, private cluster: down leaves no process behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from localcluster.control_plane import COMPONENTS, REPO_ROOT, LocalCluster
from localcluster.waiting import wait_for

SLEEPER_DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: sleeper, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: sleeper}}
  template:
    metadata: {labels: {app: sleeper}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: main
        image: unused
        command: [python, -c, "import time; time.sleep(3600)"]
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _pod_pids(cluster: LocalCluster) -> list[int]:
    out = cluster.kubectl(
        "get",
        "pods",
        "-n",
        "default",
        "-l",
        "app=sleeper",
        "-o",
        "jsonpath={.items[*].status.containerStatuses[*].containerID}",
    ).stdout
    return [int(cid.rsplit("/", 1)[1]) for cid in out.split() if cid.startswith("local://")]


def test_cluster_down_leaves_no_process(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "cluster")
    pids: dict[str, int | None] = {}
    pod_pids: list[int] = []
    try:
        cluster.up()
        pids = cluster.status()
        assert set(pids) == {*COMPONENTS, "postgres"}
        assert [name for name, pid in pids.items() if pid is None] == []
        cluster.kubectl("apply", "-f", "-", input=SLEEPER_DEPLOYMENT)
        pod_pids = wait_for(
            "two sleeper pods running as processes",
            lambda: p if len(p := _pod_pids(cluster)) == 2 else None,
            timeout=90,
        )
        # A second `up` is idempotent: the same processes keep running.
        cluster.up()
        assert cluster.status() == pids
    finally:
        result = subprocess.run(
            [sys.executable, "-m", "localcluster", "down"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "WORKERFLEET_CLUSTER_DIR": str(tmp_path / "cluster")},
        )
    assert result.returncode == 0, result.stderr
    still_alive = [pid for pid in [*pids.values(), *pod_pids] if pid and _alive(pid)]
    assert still_alive == []
    assert all(pid is None for pid in cluster.status().values())

"""The agent process itself, run privately on a second node: SIGTERM stops every pod
process before the agent exits; after a SIGKILL the recorded pids let
`kill_leftover_pod_processes` clean up; a restarted agent resumes its pods."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcluster.control_plane import REPO_ROOT, LocalCluster
from localcluster.nodeagent.process_groups import kill_leftover_pod_processes
from localcluster.waiting import wait_for
from tests.integration.localcluster.node_agent_support import (
    alive,
    container_status,
    http_server_container,
    pid_of,
    pod_if,
    records,
)

pytestmark = pytest.mark.cluster

# Keeps the scheduler from placing anyone else's pods on the private node.
PRIVATE_TAINT = "workerfleet.dev/private-test-node=true:NoSchedule"


class PrivateAgent:
    def __init__(self, cluster: LocalCluster, node: str, base: Path) -> None:
        self.cluster = cluster
        self.node = node
        self.state_dir = base / "state"
        self.log_dir = base / "logs"
        self.stderr = base / "agent.stderr"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.stderr, "ab") as err:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "localcluster.nodeagent",
                    f"--kubeconfig={self.cluster.kubeconfig}",
                    f"--node-name={self.node}",
                    f"--state-dir={self.state_dir}",
                    f"--log-dir={self.log_dir}",
                    f"--register-with-taints={PRIVATE_TAINT}",
                    "--shutdown-grace=3",
                ],
                cwd=REPO_ROOT,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    def stop(self, signum: int) -> int:
        assert self.process is not None
        self.process.send_signal(signum)
        return self.process.wait(timeout=30)

    def log(self) -> str:
        return self.stderr.read_text() if self.stderr.exists() else ""


@pytest.fixture
def private_agent(kube_cluster: LocalCluster, tmp_path: Path) -> Iterator[PrivateAgent]:
    agent = PrivateAgent(kube_cluster, f"agent-test-{uuid.uuid4().hex[:8]}", tmp_path)
    try:
        yield agent
    finally:
        if agent.process is not None and agent.process.poll() is None:
            agent.process.kill()
            agent.process.wait(timeout=30)
        kill_leftover_pod_processes(agent.state_dir)
        kube_cluster.kubectl("delete", "node", agent.node, "--wait=false", check=False)


def test_agent_stops_pod_processes_on_sigterm_and_leftovers_after_sigkill(
    kube_cluster: LocalCluster, namespace: str, tmp_path: Path, private_agent: PrivateAgent
) -> None:
    private_agent.start()
    wait_for(
        f"node {private_agent.node} Ready",
        lambda: (
            kube_cluster.kubectl(
                "get",
                "node",
                private_agent.node,
                "-o",
                "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                check=False,
            ).stdout
            == "True"
        ),
        timeout=60,
        describe=private_agent.log,
    )
    records_dir = tmp_path / "records"
    records_dir.mkdir()
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "resident", "namespace": namespace},
        "spec": {
            "nodeName": private_agent.node,
            "terminationGracePeriodSeconds": 30,
            "containers": [http_server_container(records_dir)],
        },
    }
    kube_cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))
    running = wait_for(
        "resident running on the private node",
        lambda: pod_if(kube_cluster, namespace, "resident", lambda p: pid_of(p) is not None),
        timeout=60,
        describe=private_agent.log,
    )
    first_pid = pid_of(running)
    assert first_pid is not None
    # Signalled before its handler is installed, the server would die without a record.
    wait_for("resident listening", lambda: records(records_dir, "resident"), timeout=30)
    assert (private_agent.state_dir / "agent-pids" / f"{first_pid}.json").exists()

    assert private_agent.stop(signal.SIGTERM) == 0
    assert not alive(first_pid)
    assert [r["event"] for r in records(records_dir, "resident")][-2:] == ["SIGTERM", "exit"]
    assert list((private_agent.state_dir / "agent-pids").glob("*.json")) == []

    # A new agent finds the pod, counts the lost process as a restart, and runs it again.
    private_agent.start()
    resumed = wait_for(
        "resident running again under a new agent",
        lambda: pod_if(
            kube_cluster,
            namespace,
            "resident",
            lambda p: (
                pid_of(p) not in (None, first_pid) and container_status(p)["restartCount"] >= 1
            ),
        ),
        timeout=60,
        describe=private_agent.log,
    )
    second_pid = pid_of(resumed)
    assert second_pid is not None
    assert (
        container_status(resumed)["lastState"]["terminated"]["reason"] == "ContainerStatusUnknown"
    )

    # SIGKILL leaves the pod process behind; the pid record is how it gets cleaned up.
    private_agent.stop(signal.SIGKILL)
    assert alive(second_pid)
    assert kill_leftover_pod_processes(private_agent.state_dir) == [second_pid]
    assert not alive(second_pid)
    assert kill_leftover_pod_processes(private_agent.state_dir) == []

    kube_cluster.kubectl(
        "delete", "pod", "resident", "-n", namespace, "--grace-period=0", "--force", "--wait=false"
    )

"""Helpers of the node agent's integration tests: reading pods through kubectl, the
records of the test HTTP server, and process liveness by pid."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from localcluster.control_plane import REPO_ROOT, LocalCluster

HTTP_SERVER = REPO_ROOT / "localcluster" / "fixtures" / "http_server.py"

JsonDict = dict[str, Any]


def get_pods(cluster: LocalCluster, namespace: str, selector: str | None = None) -> list[JsonDict]:
    args = ["get", "pods", "-n", namespace, "-o", "json"]
    if selector:
        args += ["-l", selector]
    items: list[JsonDict] = json.loads(cluster.kubectl(*args).stdout)["items"]
    return items


def get_pod(cluster: LocalCluster, namespace: str, name: str) -> JsonDict | None:
    result = cluster.kubectl("get", "pod", name, "-n", namespace, "-o", "json", check=False)
    if result.returncode != 0:
        if "NotFound" in result.stderr:
            return None
        raise RuntimeError(result.stderr)
    pod: JsonDict = json.loads(result.stdout)
    return pod


def pod_if(
    cluster: LocalCluster, namespace: str, name: str, predicate: Callable[[JsonDict], bool]
) -> JsonDict | None:
    """The pod when it exists and satisfies predicate, else None (for wait_for)."""
    pod = get_pod(cluster, namespace, name)
    return pod if pod is not None and predicate(pod) else None


def is_ready(pod: JsonDict) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def container_status(pod: JsonDict, index: int = 0) -> JsonDict:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return statuses[index] if len(statuses) > index else {}


def pid_of(pod: JsonDict, index: int = 0) -> int | None:
    """The pid behind a running container (containerID `local://<pid>`)."""
    status = container_status(pod, index)
    if "running" not in (status.get("state") or {}):
        return None
    container_id = str(status.get("containerID", ""))
    return (
        int(container_id.removeprefix("local://")) if container_id.startswith("local://") else None
    )


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def records(record_dir: Path, pod_name: str) -> list[JsonDict]:
    """What the test HTTP server of that pod recorded (see fixtures/http_server.py)."""
    path = record_dir / f"{pod_name}.events"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def http_server_container(record_dir: Path, **extra_env: str) -> JsonDict:
    env = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "RECORD_DIR", "value": str(record_dir)},
        *({"name": k, "value": v} for k, v in extra_env.items()),
    ]
    return {
        "name": "server",
        "image": "example.invalid/not-pulled:1",
        "command": ["python", str(HTTP_SERVER)],
        "env": env,
        "ports": [{"name": "http", "containerPort": 8080}],
    }

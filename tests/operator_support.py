"""Helpers of the operator's integration and e2e tests: manifests, kubectl reads, and the
queue through the real repository. The operator process itself is
`localcluster.operator_process.OperatorProcess`; the fixtures are in
tests/cluster_fixtures.py."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from localcluster.control_plane import LocalCluster
from workerfleet.worker.connector import Connector
from workerfleet.worker.migrations import migrate
from workerfleet.worker.models import QueueStats
from workerfleet.worker.repository import Repository

JsonDict = dict[str, Any]
T = TypeVar("T")
DEMO_HANDLERS = "workerfleet.worker.demo_handlers"


def kubectl_json(cluster: LocalCluster, *args: str) -> JsonDict | None:
    """``kubectl get ... -o json``; None when the object does not exist."""
    result = cluster.kubectl("get", *args, "-o", "json", check=False)
    if result.returncode != 0:
        if "NotFound" in result.stderr or "not found" in result.stderr:
            return None
        raise RuntimeError(result.stderr)
    found: JsonDict = json.loads(result.stdout)
    return found


def apply(cluster: LocalCluster, manifest: JsonDict) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def secret(name: str, namespace: str, dsn: str, key: str = "dsn") -> JsonDict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {key: dsn},
    }


def workerpool(name: str, namespace: str, queue_name: str, **spec: Any) -> JsonDict:
    base: JsonDict = {
        "image": "workerfleet-worker:test",
        "queue": queue_name,
        "database": {"secretRef": {"name": "queue-db"}},
        "replicas": {"min": 2, "max": 4},
        "worker": {
            "handlers": DEMO_HANDLERS,
            "concurrency": 4,
            "heartbeatInterval": "1s",
            "pollInterval": "500ms",
            "shutdownGracePeriod": "5s",
        },
    }
    for key, value in spec.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = copy.deepcopy(value)
    return {
        "apiVersion": "workerfleet.dev/v1alpha1",
        "kind": "WorkerPool",
        "metadata": {"name": name, "namespace": namespace},
        "spec": base,
    }


def pool_status(cluster: LocalCluster, namespace: str, name: str) -> JsonDict:
    pool = kubectl_json(cluster, "workerpool", name, "-n", namespace)
    return (pool or {}).get("status") or {}


def condition(status: JsonDict, kind: str) -> JsonDict:
    for found in status.get("conditions") or []:
        if found.get("type") == kind:
            return dict(found)
    return {}


def events(cluster: LocalCluster, namespace: str, kind: str = "WorkerPool") -> list[JsonDict]:
    listed = kubectl_json(
        cluster, "events", "-n", namespace, f"--field-selector=involvedObject.kind={kind}"
    )
    return list((listed or {}).get("items", []))


def event_reasons(cluster: LocalCluster, namespace: str, kind: str = "WorkerPool") -> list[str]:
    return [str(e.get("reason")) for e in events(cluster, namespace, kind)]


def pods(cluster: LocalCluster, namespace: str, pool: str) -> list[JsonDict]:
    listed = kubectl_json(cluster, "pods", "-n", namespace, "-l", f"workerfleet.dev/pool={pool}")
    return [
        p for p in (listed or {}).get("items", []) if not p["metadata"].get("deletionTimestamp")
    ]


def is_ready(pod: JsonDict) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def ready_pods(
    cluster: LocalCluster, namespace: str, pool: str, count: int
) -> list[JsonDict] | None:
    found = [p for p in pods(cluster, namespace, pool) if is_ready(p)]
    return found if len(found) == count else None


def pid_of(pod: JsonDict) -> int | None:
    """The pid behind the running worker container (containerID `local://<pid>`)."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        container_id = str(status.get("containerID", ""))
        if "running" in (status.get("state") or {}) and container_id.startswith("local://"):
            return int(container_id.removeprefix("local://"))
    return None


def run(make: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(_run(make))


async def _run(make: Callable[[], Awaitable[T]]) -> T:
    return await make()


def prepare_queue(dsn: str) -> None:
    """The queue schema, as workers would create it (enqueueing needs it first)."""
    run(lambda: migrate(dsn))


def enqueue(dsn: str, queue: str, task: str, payload: JsonDict, count: int) -> list[int]:
    async def go() -> list[int]:
        async with await Connector.open(dsn, min_size=1, max_size=2) as connector:
            repository = Repository(connector)
            return [await repository.enqueue(queue, task, payload) for _ in range(count)]

    return run(go)


def queue_stats(dsn: str, queue: str) -> QueueStats | None:
    async def go() -> QueueStats | None:
        async with await Connector.open(dsn, min_size=1, max_size=1) as connector:
            for row in await Repository(connector).queue_stats():
                if row.queue == queue:
                    return row
        return None

    return run(go)


def wide_table(cluster: LocalCluster, namespace: str, resource: str) -> list[dict[str, str]]:
    """``kubectl get RESOURCE -o wide`` (server-side printing) as rows of column -> value."""
    output = cluster.kubectl("get", resource, "-n", namespace, "-o", "wide").stdout
    lines = [line for line in output.splitlines() if line.strip()]
    header = lines[0]
    starts = [i for i, ch in enumerate(header) if ch != " " and (i == 0 or header[i - 1] == " ")]
    # Column names with a space ("DEAD JOBS") start one word early: merge such words.
    names: list[tuple[str, int]] = []
    for start in starts:
        end = header.find("  ", start)
        word = header[start : end if end != -1 else len(header)].strip()
        if names and start < names[-1][1] + len(names[-1][0]) + 2:
            continue
        names.append((word, start))
    rows = []
    for line in lines[1:]:
        row = {}
        for index, (name, start) in enumerate(names):
            end = names[index + 1][1] if index + 1 < len(names) else len(line)
            row[name] = line[start:end].strip()
        rows.append(row)
    return rows

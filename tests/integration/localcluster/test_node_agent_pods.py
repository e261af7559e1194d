"""Pod semantics of the node agent: env resolution, missing config, containers without a
command, restart policies with back-off, the grace period before SIGKILL, force deletion."""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from localcluster.control_plane import LocalCluster
from localcluster.waiting import wait_for
from tests.integration.localcluster.node_agent_support import (
    alive,
    container_status,
    get_pod,
    http_server_container,
    is_ready,
    pid_of,
    pod_if,
    records,
)

pytestmark = pytest.mark.cluster

POD_TIMEOUT_SECONDS = 90.0

DUMP_ENV = (
    "import json, os, sys; "
    "json.dump({'env': dict(os.environ), 'argv': sys.argv[1:], 'cwd': os.getcwd()}, "
    "open(os.environ['OUT'], 'w')); print('env dumped')"
)


def apply(cluster: LocalCluster, manifest: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def pod_manifest(namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "env-test"}},
        "spec": {"terminationGracePeriodSeconds": 5, **spec},
    }


def phase_is(*phases: str) -> Any:
    return lambda pod: (pod.get("status") or {}).get("phase") in phases


def waiting_reason(pod: dict[str, Any]) -> str | None:
    waiting = (container_status(pod).get("state") or {}).get("waiting") or {}
    return waiting.get("reason")


def test_env_is_resolved_like_the_kubelet_and_waits_for_a_missing_secret(
    kube_cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    out = tmp_path / "env.json"
    apply(
        kube_cluster,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": namespace},
            "data": {"queue": "emails", "LEVEL": "debug"},
        },
    )
    container = {
        "name": "dump",
        "image": "example.invalid/not-pulled:1",
        "command": ["python", "-c", DUMP_ENV],
        "args": ["--queue=$(QUEUE)", "$$(QUEUE)"],
        "workingDir": str(tmp_path),
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
        "env": [
            {"name": "OUT", "value": str(out)},
            {"name": "DSN", "valueFrom": {"secretKeyRef": {"name": "db", "key": "dsn"}}},
            {
                "name": "QUEUE",
                "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "queue"}},
            },
            {
                "name": "MISSING_OK",
                "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "x", "optional": True}},
            },
            {"name": "TARGET", "value": "$(QUEUE)@$(DSN)"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {
                "name": "POD_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
            {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        ],
    }
    apply(
        kube_cluster,
        pod_manifest(namespace, "dump", {"restartPolicy": "Never", "containers": [container]}),
    )

    def waits_for_secret_db(pod: dict[str, Any]) -> bool:
        # The Node authorizer learns what a pod references a moment after it is bound;
        # until then the agent's reads are refused (403) and the container waits for that.
        waiting = (container_status(pod).get("state") or {}).get("waiting") or {}
        return waiting.get("reason") == "CreateContainerConfigError" and '"db"' in str(
            waiting.get("message")
        )

    blocked = wait_for(
        "CreateContainerConfigError naming secret db while it is missing",
        lambda: pod_if(kube_cluster, namespace, "dump", waits_for_secret_db),
        timeout=POD_TIMEOUT_SECONDS,
        describe=lambda: json.dumps(
            container_status(get_pod(kube_cluster, namespace, "dump") or {}).get("state")
        ),
    )
    message = container_status(blocked)["state"]["waiting"]["message"]
    assert "'dsn'" in message
    assert blocked["status"]["phase"] == "Pending"
    assert not out.exists()

    secret = {"dsn": base64.b64encode(b"postgres://db/app").decode()}
    apply(
        kube_cluster,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db", "namespace": namespace},
            "data": secret,
        },
    )
    done = wait_for(
        "pod dump Succeeded once the secret exists",
        lambda: pod_if(kube_cluster, namespace, "dump", phase_is("Succeeded", "Failed")),
        timeout=POD_TIMEOUT_SECONDS,
    )
    assert done["status"]["phase"] == "Succeeded"
    terminated = container_status(done)["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")

    dumped = json.loads(out.read_text())
    env = dumped["env"]
    assert env["DSN"] == "postgres://db/app"
    assert env["QUEUE"] == "emails"
    assert env["TARGET"] == "emails@postgres://db/app"
    assert "MISSING_OK" not in env
    assert (env["CFG_queue"], env["CFG_LEVEL"]) == ("emails", "debug")
    assert env["POD_NAME"] == "dump"
    assert env["POD_NAMESPACE"] == namespace
    assert env["POD_UID"] == done["metadata"]["uid"]
    assert env["POD_IP"] == done["status"]["podIP"]
    assert env["NODE"] == done["spec"]["nodeName"]
    assert env["SA"] == "default"
    assert env["APP"] == "env-test"
    assert env["PYTHONUNBUFFERED"] == "1"
    # The agent runs from the interpreter that started the cluster: this session's.
    assert env["PATH"].split(":")[0] == os.path.dirname(os.path.abspath(sys.executable))
    assert dumped["argv"] == ["--queue=emails", "$(QUEUE)"]
    assert dumped["cwd"] == str(tmp_path)
    log_file = kube_cluster.logs_dir / f"{namespace}_dump_dump.log"
    assert "env dumped" in log_file.read_text()


def test_container_without_command_reports_why(kube_cluster: LocalCluster, namespace: str) -> None:
    apply(
        kube_cluster,
        pod_manifest(
            namespace, "imageonly", {"containers": [{"name": "main", "image": "nginx:1.27"}]}
        ),
    )
    pod = wait_for(
        "waiting reason NoCommand",
        lambda: pod_if(
            kube_cluster, namespace, "imageonly", lambda p: waiting_reason(p) == "NoCommand"
        ),
        timeout=POD_TIMEOUT_SECONDS,
    )
    message = container_status(pod)["state"]["waiting"]["message"]
    assert "command" in message
    assert "nginx:1.27" in message
    assert pod["status"]["phase"] == "Pending"


def test_restart_policies(kube_cluster: LocalCluster, namespace: str, tmp_path: Path) -> None:
    counter = tmp_path / "attempts"
    # Fails on its first run, succeeds on its second.
    second_time_lucky = (
        "import os, sys; p = os.environ['COUNTER']; "
        "n = int(open(p).read()) if os.path.exists(p) else 0; "
        "open(p, 'w').write(str(n + 1)); sys.exit(0 if n else 7)"
    )
    apply(
        kube_cluster,
        pod_manifest(
            namespace,
            "never",
            {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "main",
                        "image": "x",
                        "command": ["python", "-c", "raise SystemExit(3)"],
                    }
                ],
            },
        ),
    )
    apply(
        kube_cluster,
        pod_manifest(
            namespace,
            "onfailure",
            {
                "restartPolicy": "OnFailure",
                "containers": [
                    {
                        "name": "main",
                        "image": "x",
                        "command": ["python", "-c", second_time_lucky],
                        "env": [{"name": "COUNTER", "value": str(counter)}],
                    }
                ],
            },
        ),
    )
    apply(
        kube_cluster,
        pod_manifest(
            namespace,
            "missing",
            {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": "x", "command": ["no-such-program-here"]}],
            },
        ),
    )

    never = wait_for(
        "pod never Failed",
        lambda: pod_if(kube_cluster, namespace, "never", phase_is("Failed", "Succeeded")),
        timeout=POD_TIMEOUT_SECONDS,
    )
    assert never["status"]["phase"] == "Failed"
    status = container_status(never)
    assert status["state"]["terminated"]["exitCode"] == 3
    assert status["state"]["terminated"]["reason"] == "Error"
    assert status["restartCount"] == 0

    onfailure = wait_for(
        "pod onfailure Succeeded after one restart",
        lambda: pod_if(kube_cluster, namespace, "onfailure", phase_is("Failed", "Succeeded")),
        timeout=POD_TIMEOUT_SECONDS,
    )
    assert onfailure["status"]["phase"] == "Succeeded"
    status = container_status(onfailure)
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 7
    assert counter.read_text() == "2"

    missing = wait_for(
        "pod missing Failed",
        lambda: pod_if(kube_cluster, namespace, "missing", phase_is("Failed", "Succeeded")),
        timeout=POD_TIMEOUT_SECONDS,
    )
    terminated = container_status(missing)["state"]["terminated"]
    assert terminated["reason"] == "StartError"
    assert "no-such-program-here" in terminated["message"]


def test_crash_loop_backs_off_and_counts_restarts(
    kube_cluster: LocalCluster, namespace: str
) -> None:
    apply(
        kube_cluster,
        pod_manifest(
            namespace,
            "crasher",
            {
                "containers": [
                    {"name": "main", "image": "x", "command": ["python", "-c", "exit(1)"]}
                ]
            },
        ),
    )
    pod = wait_for(
        "crasher restarted at least twice",
        lambda: pod_if(
            kube_cluster,
            namespace,
            "crasher",
            lambda p: container_status(p).get("restartCount", 0) >= 2,
        ),
        timeout=POD_TIMEOUT_SECONDS,
    )
    assert pod["status"]["phase"] == "Running"
    backing_off = wait_for(
        "crasher in CrashLoopBackOff",
        lambda: pod_if(
            kube_cluster, namespace, "crasher", lambda p: waiting_reason(p) == "CrashLoopBackOff"
        ),
        timeout=60,
    )
    status = container_status(backing_off)
    assert status["state"]["waiting"]["message"].startswith("back-off ")
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert not status["ready"]


def test_grace_period_ends_in_sigkill_before_the_object_goes(
    kube_cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    ignoring = tmp_path / "ignoring-sigterm"
    stubborn = (
        "import pathlib, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"pathlib.Path({str(ignoring)!r}).touch(); time.sleep(3600)"
    )
    apply(
        kube_cluster,
        pod_manifest(
            namespace,
            "stubborn",
            {
                "terminationGracePeriodSeconds": 3,
                "containers": [
                    {"name": "main", "image": "x", "command": ["python", "-c", stubborn]}
                ],
            },
        ),
    )
    pod = wait_for(
        "stubborn running",
        lambda: pod_if(kube_cluster, namespace, "stubborn", lambda p: pid_of(p) is not None),
        timeout=POD_TIMEOUT_SECONDS,
    )
    pid = pid_of(pod)
    assert pid is not None
    wait_for("stubborn ignoring SIGTERM", ignoring.exists, timeout=30)
    kube_cluster.kubectl("delete", "pod", "stubborn", "-n", namespace, "--wait=false")
    # While the process ignores SIGTERM, the object stays (terminating).
    terminating = get_pod(kube_cluster, namespace, "stubborn")
    assert terminating is not None
    assert terminating["metadata"].get("deletionTimestamp")
    assert alive(pid)
    observed_alive_after_gone = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        gone = get_pod(kube_cluster, namespace, "stubborn") is None
        if gone:
            observed_alive_after_gone.append(alive(pid))
            break
        time.sleep(0.2)
    assert observed_alive_after_gone == [False]


def test_force_deleted_pod_loses_its_process(kube_cluster: LocalCluster, namespace: str) -> None:
    apply(
        kube_cluster,
        pod_manifest(
            namespace,
            "sleeper",
            {
                "containers": [
                    {
                        "name": "main",
                        "image": "x",
                        "command": ["python", "-c", "import time; time.sleep(3600)"],
                    }
                ]
            },
        ),
    )
    pod = wait_for(
        "sleeper running",
        lambda: pod_if(kube_cluster, namespace, "sleeper", lambda p: pid_of(p) is not None),
        timeout=POD_TIMEOUT_SECONDS,
    )
    pid = pid_of(pod)
    assert pid is not None
    kube_cluster.kubectl(
        "delete", "pod", "sleeper", "-n", namespace, "--grace-period=0", "--force", "--wait=false"
    )
    wait_for(f"pid {pid} of the force-deleted pod gone", lambda: not alive(pid), timeout=30)


def test_init_containers_run_in_order_before_the_containers(
    kube_cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    journal = tmp_path / "journal"

    def step(name: str) -> dict[str, Any]:
        append = f"open({str(journal)!r}, 'a').write({name!r} + '\\n')"
        return {"name": name, "image": "x", "command": ["python", "-c", append]}

    main = step("main")
    main["command"][-1] += "; import time; time.sleep(3600)"
    apply(
        kube_cluster,
        pod_manifest(
            namespace,
            "initialized",
            {"initContainers": [step("first"), step("second")], "containers": [main]},
        ),
    )
    pod = wait_for(
        "initialized Running",
        lambda: pod_if(kube_cluster, namespace, "initialized", lambda p: pid_of(p) is not None),
        timeout=POD_TIMEOUT_SECONDS,
    )
    wait_for("main wrote its line", lambda: "main" in journal.read_text(), timeout=30)
    assert journal.read_text().split() == ["first", "second", "main"]
    init_states = [s["state"] for s in pod["status"]["initContainerStatuses"]]
    assert [s["terminated"]["exitCode"] for s in init_states] == [0, 0]
    conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert conditions["Initialized"] == "True"


def test_startup_probe_holds_back_liveness_and_readiness(
    kube_cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    container = http_server_container(tmp_path)
    container["startupProbe"] = {
        "exec": {"command": ["test", "-f", str(marker)]},
        "periodSeconds": 1,
        "failureThreshold": 120,
    }
    container["livenessProbe"] = {"tcpSocket": {"port": "http"}, "periodSeconds": 1}
    container["readinessProbe"] = {"httpGet": {"path": "/readyz", "port": 8080}, "periodSeconds": 1}
    apply(kube_cluster, pod_manifest(namespace, "slowstart", {"containers": [container]}))
    agent_log = kube_cluster.process("node-agent").log_file
    expected = f"{namespace}/slowstart/server: startup probe failed (2/120)"
    wait_for(
        "slowstart's startup probe failing twice",
        lambda: expected in agent_log.read_text(),
        timeout=POD_TIMEOUT_SECONDS,
    )
    waiting = get_pod(kube_cluster, namespace, "slowstart")
    assert waiting is not None
    assert (container_status(waiting)["started"], container_status(waiting)["ready"]) == (
        False,
        False,
    )
    # Neither readiness nor liveness ran before the startup probe succeeded.
    assert [r for r in records(tmp_path, "slowstart") if r["event"] == "request"] == []

    marker.touch()
    ready = wait_for(
        "slowstart started and Ready",
        lambda: pod_if(kube_cluster, namespace, "slowstart", is_ready),
        timeout=60,
    )
    assert container_status(ready)["started"] is True
    assert container_status(ready)["restartCount"] == 0

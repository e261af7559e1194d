"""The README's worked example, on the local cluster: a Slack webhook in a Secret, a pool
left with no workers, the incident in `kubectl get monitors` and at the receiver (a real
HTTP server on loopback), then resolved once workers come back. On the way: a Secret
missing at first (a condition names it, the Monitor keeps running), and an operator
restart that neither fires the incident again nor forgets it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from localcluster.control_plane import LocalCluster
from localcluster.operator_process import OperatorProcess
from localcluster.waiting import wait_for
from tests.operator_support import (
    apply,
    condition,
    enqueue,
    events,
    kubectl_json,
    pods,
    pool_status,
    prepare_queue,
    secret,
    wide_table,
    workerpool,
)
from tests.webhook_receiver import SECRET_PATH, WebhookReceiver
from workerfleet.operator.notifications import payloads

pytestmark = pytest.mark.cluster

TOKEN = SECRET_PATH.rsplit("/", 1)[-1]
RULE = "noWorkersWithPending"


def monitor_status(cluster: LocalCluster, namespace: str) -> dict[str, Any]:
    found = kubectl_json(cluster, "monitor", "mail-alerts", "-n", namespace)
    return (found or {}).get("status") or {}


def firing_column(cluster: LocalCluster, namespace: str) -> str:
    (row,) = wide_table(cluster, namespace, "monitors")
    return row["FIRING"]


def slack_headlines(receiver: WebhookReceiver) -> list[str]:
    return [body["blocks"][0]["text"]["text"] for body in receiver.bodies()]


def assert_slack_shape(body: dict[str, Any]) -> None:
    assert set(body) == {"text", "blocks"}
    assert 0 < len(body["text"]) <= payloads.SLACK_TEXT_MAX
    header, section, context = body["blocks"]
    assert header["type"] == "header"
    assert len(header["text"]["text"]) <= payloads.SLACK_HEADER_MAX
    assert section["type"] == "section"
    assert len(section["text"]["text"]) <= payloads.SLACK_SECTION_TEXT_MAX
    assert context["type"] == "context"


def test_worked_example_slack_incident_fires_once_and_resolves(
    crds: LocalCluster,
    namespace: str,
    operator: OperatorProcess,
    postgres_dsn: str,
    tmp_path: Path,
) -> None:
    prepare_queue(postgres_dsn)
    apply(crds, secret("queue-db", namespace, postgres_dsn))
    pool = workerpool("emails", namespace, "emails", replicas={"min": 1, "max": 2})
    pool["metadata"]["labels"] = {"team": "mail"}
    apply(crds, pool)
    crds.kubectl("scale", "workerpool", "emails", "-n", namespace, "--replicas=0")
    wait_for(
        "the pool to run no worker",
        lambda: (
            pool_status(crds, namespace, "emails").get("replicas") == 0
            and not pods(crds, namespace, "emails")
        ),
        timeout=60,
    )

    # The Monitor comes first, its webhook's Secret later: a condition names what is missing.
    apply(
        crds,
        {
            "apiVersion": "workerfleet.dev/v1alpha1",
            "kind": "Monitor",
            "metadata": {"name": "mail-alerts", "namespace": namespace},
            "spec": {
                "selector": {"matchLabels": {"team": "mail"}},
                "interval": "2s",
                "rules": {RULE: {"for": "4s"}},
                "alerts": {"webhook": {"secretRef": {"name": "alerts"}, "format": "slack"}},
            },
        },
    )
    status = wait_for(
        "NotificationsDelivered to name the missing Secret",
        lambda: (
            (s := monitor_status(crds, namespace))
            and condition(s, "NotificationsDelivered").get("reason") == "WebhookSecretNotFound"
            and s
        ),
        timeout=30,
    )
    missing = condition(status, "NotificationsDelivered")
    assert missing["status"] == "False"
    assert f"Secret {namespace}/alerts not found" in missing["message"]
    assert condition(status, "Ready")["status"] == "True"  # recovery and rules go on

    with WebhookReceiver() as receiver:
        apply(crds, secret("alerts", namespace, receiver.url, key="url"))
        enqueue(postgres_dsn, "emails", "echo", {"x": 1}, count=3)

        (fired,) = receiver.wait_for_requests(1, timeout=60)
        assert fired.path == SECRET_PATH
        assert_slack_shape(fired.body)
        assert fired.body["blocks"][0]["text"]["text"] == f"[FIRING] {RULE} on {namespace}/emails"
        assert "3 jobs ready to run, 0 workers online" in fired.body["text"]
        assert firing_column(crds, namespace) == "1"
        status = monitor_status(crds, namespace)
        (incident,) = [i for i in status["incidents"] if i["state"] == "firing"]
        assert (incident["rule"], incident["pool"]) == (RULE, "emails")
        described = crds.kubectl("describe", "monitor", "mail-alerts", "-n", namespace).stdout
        print(crds.kubectl("get", "monitors", "-n", namespace).stdout + described)
        assert RULE in described
        assert "firing" in described
        wait_for(
            "IncidentFiring Events on the Monitor and the WorkerPool",
            lambda: (
                {"Monitor", "WorkerPool"}
                <= {
                    e["involvedObject"]["kind"]
                    for e in events(crds, namespace, "Monitor") + events(crds, namespace)
                    if e["reason"] == "IncidentFiring"
                }
            ),
            timeout=15,
        )

        # A restart of the operator: the incident stays firing and is not notified again.
        runs_before = status["lastRun"]
        operator.stop()
        restarted = OperatorProcess(crds.kubeconfig, namespace, tmp_path / "operator-2.log")
        try:
            restarted.wait_ready()
            wait_for(
                "two runs of the Monitor by the new operator",
                lambda: (
                    (s := monitor_status(crds, namespace)).get("lastRun", "") > runs_before
                    and s.get("firing") == 1
                    and _runs_after(crds, namespace, s["lastRun"])
                ),
                timeout=60,
            )
            assert len(receiver.requests()) == 1

            # Workers come back, drain the queue: the incident resolves, once.
            crds.kubectl(
                "patch", "workerpool", "emails", "-n", namespace, "--type=merge",
                "-p", json.dumps({"spec": {"replicas": {"override": None}}}),
            )  # fmt: skip
            receiver.wait_for_requests(2, timeout=120)
            wait_for(
                "FIRING back to 0",
                lambda: firing_column(crds, namespace) == "0",
                timeout=30,
            )
            assert slack_headlines(receiver) == [
                f"[FIRING] {RULE} on {namespace}/emails",
                f"[RESOLVED] {RULE} on {namespace}/emails",
            ]
            # status.delivery takes up what the outbox did at the Monitor's next run.
            status = wait_for(
                "the delivery in status.delivery",
                lambda: (
                    (s := monitor_status(crds, namespace)) and s["delivery"]["delivered"] >= 1 and s
                ),
                timeout=30,
            )
            assert status["delivery"]["pending"] == 0
            delivered = condition(status, "NotificationsDelivered")
            assert (delivered["status"], delivered["reason"]) == ("True", "Delivered")
            (resolved,) = [i for i in status["incidents"] if i["rule"] == RULE]
            assert resolved["state"] == "resolved"
            everything = json.dumps(kubectl_json(crds, "monitor", "mail-alerts", "-n", namespace))
            everything += json.dumps(events(crds, namespace, "Monitor") + events(crds, namespace))
            everything += operator.logs() + restarted.logs()
            assert TOKEN not in everything
        finally:
            print(f"--- restarted operator log ---\n{restarted.logs()[-20000:]}")
            restarted.stop()


def _runs_after(cluster: LocalCluster, namespace: str, seen: str) -> bool:
    """True once the Monitor has run again after the run at ``seen``."""
    return bool(
        wait_for(
            "one more run",
            lambda: monitor_status(cluster, namespace).get("lastRun", "") > seen,
            timeout=30,
        )
    )

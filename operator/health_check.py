"""``workerfleet-operator check``: are the operator's pods healthy, and does exactly one act?

What the chart's ``helm test`` pod runs. It lists the operator's pods (in-cluster
credentials, a Role that only reads pods), asks each one's /healthz and /readyz on
its pod IP, and passes once every pod is healthy and ready and exactly one of them
acts (role ``leader`` or ``standalone``); the others must say ``standby``. It asks
again until ``--timeout``, since a standby may be moments away from taking over
right after an upgrade.

    workerfleet-operator check --namespace workerfleet \\
        --selector app.kubernetes.io/instance=workerfleet --port 8080
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

ACTING_ROLES = ("leader", "standalone")
HTTP_TIMEOUT_SECONDS = 5.0
RETRY_SECONDS = 2.0


@dataclass(frozen=True)
class PodAnswer:
    pod: str
    healthz: int
    readyz: int
    role: str | None


def verdict(answers: Sequence[PodAnswer]) -> str | None:
    """None when the operator is fine, else what is wrong."""
    if not answers:
        return "no running operator pod"
    for answer in answers:
        if answer.healthz != 200:
            return f"{answer.pod}: /healthz answered {answer.healthz}"
        if answer.readyz != 200:
            return f"{answer.pod}: /readyz answered {answer.readyz}"
    acting = [a.pod for a in answers if a.role in ACTING_ROLES]
    if len(acting) != 1:
        return f"{len(acting)} operator pods act ({', '.join(acting) or 'none'}); exactly one must"
    others = [a for a in answers if a.role not in ACTING_ROLES and a.role != "standby"]
    if others:
        return f"{others[0].pod}: role {others[0].role!r} is neither acting nor standby"
    return None


def get(url: str) -> tuple[int, dict[str, Any]]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=HTTP_TIMEOUT_SECONDS) as response:
            return int(response.status), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return int(error.code), {}
    except (OSError, ValueError):
        return 0, {}


def ask(
    pod: str, ip: str, port: int, fetch: Callable[[str], tuple[int, dict[str, Any]]]
) -> PodAnswer:
    healthz, _ = fetch(f"http://{ip}:{port}/healthz")
    readyz, body = fetch(f"http://{ip}:{port}/readyz")
    role = body.get("role")
    return PodAnswer(pod, healthz, readyz, str(role) if role is not None else None)


def running_pods(namespace: str, selector: str) -> list[tuple[str, str]]:
    """(name, IP) of the running pods matching ``selector``."""
    from kubernetes import client  # imported here: `check` is the only caller

    from workerfleet.operator.kube import api_client

    api = api_client()
    try:
        response: Any = client.CoreV1Api(api).list_namespaced_pod(
            namespace, label_selector=selector, _preload_content=False
        )
    finally:
        api.close()  # type: ignore[no-untyped-call]
    found = []
    for pod in json.loads(response.data).get("items", []):
        status, metadata = pod.get("status") or {}, pod.get("metadata") or {}
        leaving = metadata.get("deletionTimestamp")
        if status.get("phase") == "Running" and status.get("podIP") and not leaving:
            found.append((str(metadata["name"]), str(status["podIP"])))
    return found


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="workerfleet-operator check", description=__doc__)
    parser.add_argument("--namespace", required=True, help="the operator's namespace")
    parser.add_argument("--selector", required=True, help="label selector of its pods")
    parser.add_argument("--port", type=int, default=8080, help="its health port")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to keep asking")
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    deadline = time.monotonic() + args.timeout
    while True:
        answers = [
            ask(name, ip, args.port, get)
            for name, ip in running_pods(args.namespace, args.selector)
        ]
        problem = verdict(answers)
        if problem is None or time.monotonic() >= deadline:
            break
        time.sleep(RETRY_SECONDS)
    for answer in answers:
        print(f"{answer.pod}: healthz {answer.healthz}, readyz {answer.readyz}, role {answer.role}")
    if problem is not None:
        print(f"FAIL: {problem}")
        return 1
    print(f"OK: {len(answers)} operator pod(s) healthy, exactly one acting")
    return 0

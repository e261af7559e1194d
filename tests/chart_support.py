"""The Helm chart as the tests see it: rendering, its alert rules and dashboard, and the
metric names they use compared with what the processes export."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from localcluster.control_plane import REPO_ROOT, LocalCluster, binaries_dir

CHART = REPO_ROOT / "charts" / "workerfleet"
DASHBOARD = CHART / "dashboards" / "workerfleet.json"
# Series Prometheus makes itself for every target; no process exports them.
PROMETHEUS_MADE = frozenset({"up"})
# PromQL words that look like metric names but are not.
KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"bool", "offset", "inf", "nan"}
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_BRACES = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w$.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()")


def helm(*args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    argv = [str(binaries_dir(quiet=True) / "helm")]
    if kubeconfig is not None:
        argv.append(f"--kubeconfig={kubeconfig}")
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=180)


def render(*values: str, release: str = "wf", namespace: str = "workerfleet") -> list[Any]:
    """`helm template` with `--set` values; the documents, parsed."""
    sets = [part for value in values for part in ("--set", value)]
    result = helm("template", release, str(CHART), "-n", namespace, *sets)
    if result.returncode != 0:
        raise AssertionError(f"helm template {' '.join(values)}: {result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def of_kind(documents: Iterable[Any], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents if doc.get("kind") == kind]


def rule_groups(*values: str) -> list[dict[str, Any]]:
    """The PrometheusRule's groups, with the chart's defaults unless `values` say otherwise."""
    (rule,) = of_kind(render("prometheusRule.enabled=true", *values), "PrometheusRule")
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def alerts(groups: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Alert name -> expression."""
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_expressions(board: Mapping[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and variable queries."""
    expressions = [
        target["expr"]
        for panel in board["panels"]
        for target in panel.get("targets", [])
        if target.get("expr")
    ]
    for variable in board.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, Mapping):
            query = query.get("query")
        if variable.get("type") == "query" and isinstance(query, str):
            inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", query.strip())
            expressions.append(inner.group(1) if inner else query)
    return expressions


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression reads (not functions, labels or keywords)."""
    text = _STRING.sub('""', expression)
    while _BRACES.search(text):
        text = _BRACES.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _LABEL_LIST.sub(" ", text)
    return {
        name
        for name in _IDENTIFIER.findall(text)
        if name not in KEYWORDS and not re.fullmatch(r"\d.*", name)
    }


def exported_names(exposition: str) -> set[str]:
    """Every series name a /metrics page can carry, from its families (a labelled counter
    that was never incremented has no sample yet, but its family is declared)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("", "_count", "_sum", "_created"),
        "info": ("_info",),
        "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    }
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def sampled_names(exposition: str) -> set[str]:
    """The series names a /metrics page carries samples of. An unlabelled metric always
    has one; a labelled one only once something set it (an incident fired, a job failed),
    and until then its family's `# HELP`/`# TYPE` lines are all prometheus_client prints."""
    return {
        sample.name
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def samples_with(exposition: str, labels: Mapping[str, str]) -> dict[str, list[float]]:
    """Series name -> the values of a /metrics page's samples that carry all of `labels`."""
    found: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if labels.items() <= sample.labels.items():
                found.setdefault(sample.name, []).append(sample.value)
    return found


# -- the chart installed on the local cluster (e2e) ---------------------------------------

README = REPO_ROOT / "README.md"
_README_BLOCK = re.compile(r"<!-- e2e: ([\w-]+) -->\n```sh\n(.*?)```", re.DOTALL)
OPERATOR_PORT = 8080
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


def readme_blocks() -> dict[str, str]:
    """The README's shell blocks marked `<!-- e2e: NAME -->`, by name."""
    return dict(_README_BLOCK.findall(README.read_text()))


def operator_pods(cluster: LocalCluster, namespace: str, release: str) -> list[dict[str, Any]]:
    """The release's operator pods that are not being deleted."""
    selector = f"app.kubernetes.io/name=workerfleet,app.kubernetes.io/instance={release}"
    listed = cluster.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json")
    return [
        pod
        for pod in json.loads(listed.stdout)["items"]
        if not pod["metadata"].get("deletionTimestamp")
    ]


def ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def lease_holder(cluster: LocalCluster, namespace: str, lease: str) -> str | None:
    """The pod name of the Lease's holder (identities are `<pod>_<random>`)."""
    result = cluster.kubectl(
        "get", "lease", lease, "-n", namespace, "-o", "jsonpath={.spec.holderIdentity}", check=False
    )
    holder = result.stdout.strip()
    return holder.rpartition("_")[0] if holder else None


def http_get(url: str) -> tuple[int, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode()


def roles(pods: Iterable[Mapping[str, Any]]) -> dict[str, str | None]:
    """Pod name -> the role its /readyz reports (None when it is not ready)."""
    found: dict[str, str | None] = {}
    for pod in pods:
        status, body = http_get(f"http://{pod['status']['podIP']}:{OPERATOR_PORT}/readyz")
        found[pod["metadata"]["name"]] = json.loads(body).get("role") if status == 200 else None
    return found


def pid_of(pod: Mapping[str, Any]) -> int:
    (status,) = pod["status"]["containerStatuses"]
    return int(str(status["containerID"]).removeprefix("local://"))


@dataclass(frozen=True)
class Write:
    """One write the API server audited: when, by which pod's token, to what."""

    at: datetime
    pod: str
    verb: str
    resource: str
    name: str


def audited_writes(cluster: LocalCluster, username: str) -> list[Write]:
    """Writes by `username` from the apiserver's audit log, oldest first. The pod comes
    from the bound token, which the node agent requests for each pod."""
    log = cluster.audit_log
    if not log.exists():
        raise AssertionError(
            f"{log} is missing: the cluster was started before audit logging; "
            "restart it (make cluster-down cluster-up)"
        )
    writes = []
    for line in log.read_text().splitlines():
        event = json.loads(line)
        user = event.get("user") or {}
        if user.get("username") != username or event.get("verb") not in WRITE_VERBS:
            continue
        pods = (user.get("extra") or {}).get("authentication.kubernetes.io/pod-name") or ["?"]
        target = event.get("objectRef") or {}
        writes.append(
            Write(
                at=datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00")),
                pod=pods[0],
                verb=event["verb"],
                resource="/".join(
                    filter(None, [target.get("resource"), target.get("subresource")])
                ),
                name=str(target.get("name", "")),
            )
        )
    return sorted(writes, key=lambda write: write.at)

"""The Helm chart as the tests see it: rendering, its alert rules and dashboard, and the
metric names they use compared with what the processes export."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from localcluster.control_plane import REPO_ROOT, binaries_dir

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

"""The chart's alert rules, checked and unit-tested with Prometheus's own promtool: the
rules parse, and every alert fires on the series it is for (and not on the others), at the
chart's default thresholds (alerts_test.yaml)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from localcluster.tools import promtool
from tests.chart_support import alerts, render, rule_groups

ALERT_TESTS = Path(__file__).with_name("alerts_test.yaml")


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool()), *args], capture_output=True, text=True, timeout=120, check=False
    )


def write_rules(directory: Path, *values: str) -> Path:
    rules = directory / "workerfleet-rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rule_groups(*values)}))
    return rules


def test_the_rules_pass_promtool_check(tmp_path: Path) -> None:
    rules = write_rules(tmp_path)
    checked = run_promtool("check", "rules", str(rules))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alerts(rule_groups()))} rules found" in checked.stdout


def test_every_alert_fires_on_its_series_and_only_there(tmp_path: Path) -> None:
    write_rules(tmp_path)
    shutil.copy(ALERT_TESTS, tmp_path / ALERT_TESTS.name)
    tested = run_promtool("test", "rules", str(tmp_path / ALERT_TESTS.name))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    cases = [
        case
        for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    firing = {case["alertname"] for case in cases if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    names = set(alerts(rule_groups()))
    assert firing == names
    assert quiet == names


def test_a_changed_threshold_changes_the_verdict(tmp_path: Path) -> None:
    """The tests can fail: at a queue depth threshold above the series, no alert fires."""
    write_rules(tmp_path, "prometheusRule.alerts.queueDepth.threshold=2000")
    shutil.copy(ALERT_TESTS, tmp_path / ALERT_TESTS.name)
    tested = run_promtool("test", "rules", str(tmp_path / ALERT_TESTS.name))
    assert tested.returncode != 0
    assert "WorkerfleetQueueDepthHigh" in tested.stdout + tested.stderr


def test_alerts_can_be_turned_off_and_labelled() -> None:
    groups = rule_groups(
        "prometheusRule.alerts.workerDown.enabled=false", "prometheusRule.alertLabels.team=mail"
    )
    names = alerts(groups)
    assert "WorkerfleetWorkerDown" not in names
    rules = [rule for group in groups for rule in group["rules"]]
    assert all(rule["labels"]["team"] == "mail" for rule in rules)


def test_the_rule_and_the_dashboard_are_behind_their_values() -> None:
    kinds = {doc["kind"] for doc in render()}
    assert "PrometheusRule" not in kinds
    assert "ConfigMap" not in kinds
    documents = render("prometheusRule.enabled=true", "dashboards.enabled=true")
    (board,) = [d for d in documents if d["kind"] == "ConfigMap"]
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert '"uid": "workerfleet"' in board["data"]["workerfleet.json"]

"""The metric names the chart's rules and dashboard read, as tests/chart_support.py finds
them (the e2e tier compares them with what the processes export)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from tests.chart_support import (
    dashboard,
    dashboard_expressions,
    exported_names,
    metric_names,
    sampled_names,
    samples_with,
)


def test_names_are_found_and_functions_labels_keywords_are_not() -> None:
    expression = """
        histogram_quantile(0.95, sum by (namespace, pool, le) (rate(
        workerfleet_worker_job_duration_seconds_bucket{job="x", pool=~"$pool"}[$__rate_interval])))
          > 300
        and on (namespace, pool) workerfleet_operator_pool_ready_replicas == 0
        unless ignoring(le) time() - process_start_time_seconds offset 5m > bool 2
    """
    assert metric_names(expression) == {
        "workerfleet_worker_job_duration_seconds_bucket",
        "workerfleet_operator_pool_ready_replicas",
        "process_start_time_seconds",
    }
    assert metric_names('up{job="a{b}"} == 0') == {"up"}
    assert metric_names("count(x) > 0 and on () y") == {"x", "y"}


def test_the_dashboard_reads_operator_and_worker_metrics() -> None:
    names = set().union(*(metric_names(e) for e in dashboard_expressions(dashboard())))
    assert "workerfleet_operator_queue_jobs" in names
    assert "workerfleet_worker_jobs_succeeded_total" in names
    assert "workerfleet_operator_pool_desired_replicas" in names  # the variables' query
    assert "workerfleet_operator_pool_max_replicas" in names
    assert "workerfleet_operator_incidents_firing" in names


def test_exported_names_include_what_a_family_may_carry() -> None:
    page = (
        "# HELP a_jobs Jobs\n# TYPE a_jobs counter\n"
        "# HELP a_seconds Time\n# TYPE a_seconds histogram\n"
        'a_seconds_bucket{le="+Inf"} 1.0\na_seconds_count 1.0\na_seconds_sum 2.0\n'
        "# HELP a_up Up\n# TYPE a_up gauge\na_up 1.0\n"
    )
    names = exported_names(page)
    assert {"a_jobs_total", "a_seconds_bucket", "a_seconds_sum", "a_up"} <= names
    assert "a_jobs" not in names


def test_a_labelled_gauge_nothing_set_yet_is_declared_but_has_no_sample() -> None:
    """What prometheus_client really prints: the e2e tier counts such a family as exported
    (an incident metric before any incident fires) and the pool's gauges by their samples."""
    registry = CollectorRegistry()
    Gauge("a_leader", "Acting", registry=registry)
    Gauge("a_incidents_firing", "Firing", ["pool"], registry=registry)
    Gauge("a_max_replicas", "Max", ["pool"], registry=registry).labels("emails").set(4)
    page = generate_latest(registry).decode()
    assert "# TYPE a_incidents_firing gauge" in page
    assert {"a_leader", "a_incidents_firing", "a_max_replicas"} <= exported_names(page)
    assert sampled_names(page) == {"a_leader", "a_max_replicas"}
    assert samples_with(page, {"pool": "emails"}) == {"a_max_replicas": [4.0]}
    assert samples_with(page, {"pool": "reports"}) == {}


def test_a_name_only_mentioned_in_help_text_is_not_exported() -> None:
    page = "# HELP a_up Up, unlike a_down\n# TYPE a_up gauge\na_up 1.0\n"
    assert exported_names(page) == sampled_names(page) == {"a_up"}

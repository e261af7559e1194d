"""The SQL files: named blocks parse, parameters are documented, migrations are ordered."""

from __future__ import annotations

import re

import pytest

from workerfleet.worker import migrations
from workerfleet.worker.queries import QUERIES, QueryFileError, parse_queries, sql_text
from workerfleet.worker.repository import NOTIFY_CHANNEL, WORKERS_CHANNEL

PARAMETER = re.compile(r"\$(\d+)")


def test_parse_queries_splits_named_blocks() -> None:
    text = (
        "-- preamble\n\n-- first --\n-- One: $1 id.\nSELECT $1;\n\n"
        "-- second --\n-- Two.\nSELECT 2;\n"
    )
    assert parse_queries(text) == {
        "first": "-- One: $1 id.\nSELECT $1;",
        "second": "-- Two.\nSELECT 2;",
    }


def test_parse_queries_refuses_duplicates_and_empty_blocks() -> None:
    with pytest.raises(QueryFileError, match=r"'a' is defined twice"):
        parse_queries("-- a --\nSELECT 1;\n-- a --\nSELECT 2;\n")
    with pytest.raises(QueryFileError, match=r"'b' in queries.sql has no SQL"):
        parse_queries("-- b --\n-- only a description\n")


def test_every_query_describes_each_parameter_it_uses() -> None:
    for name, sql in QUERIES.items():
        description, _, body = sql.partition("\n")
        assert description.startswith("-- "), name
        used = {int(number) for number in PARAMETER.findall(body)}
        described = {int(number) for number in PARAMETER.findall(description)}
        assert used == described, f"{name}: uses {sorted(used)}, describes {sorted(described)}"
        assert used == set(range(1, len(used) + 1)), f"{name}: parameters have gaps"


def test_repository_queries_exist() -> None:
    expected = {
        "enqueue_many", "enqueue_many_plain", "claim", "heartbeat", "complete_many", "fail",
        "release",
        "register_worker", "set_worker_state", "rescue_expired_leases", "reap_dead_workers",
        "cancel", "retry_dead", "prune_finished", "prune_workers", "queue_stats",
        "worker_stats", "get_job", "list_jobs", "list_workers", "release_incarnations",
        "pool_workers", "drain_workers", "undrain_workers", "running_jobs_of_workers",
    }  # fmt: skip
    assert expected <= set(QUERIES)


def test_notify_channel_matches_the_sql() -> None:
    assert f"pg_notify('{NOTIFY_CHANNEL}'" in sql_text("schema.sql")
    for name in (
        "fail",
        "release",
        "retry_dead",
        "rescue_expired_leases",
        "reap_dead_workers",
        "release_incarnations",
    ):
        assert f"pg_notify('{NOTIFY_CHANNEL}'" in QUERIES[name], name
    for name in ("drain_workers", "undrain_workers"):
        assert f"pg_notify('{WORKERS_CHANNEL}'" in QUERIES[name], name


def test_migrations_are_numbered_without_gaps() -> None:
    available = migrations.available_migrations()
    assert [m.version for m in available] == [f"{n:04d}" for n in range(1, len(available) + 1)]
    assert all(m.sql.strip() for m in available)


def test_pending_migrations_skip_the_applied_ones() -> None:
    available = [
        migrations.Migration("0001", "0001_a.sql", "SELECT 1"),
        migrations.Migration("0002", "0002_b.sql", "SELECT 2"),
        migrations.Migration("0003", "0003_c.sql", "SELECT 3"),
    ]
    pending = migrations.pending_migrations(available, {"0001", "0003"})
    assert [m.version for m in pending] == ["0002"]
    assert migrations.pending_migrations(available, {"0001", "0002", "0003"}) == []


def test_queue_name_rule_is_the_same_in_python_and_sql() -> None:
    from workerfleet.worker.models import QUEUE_NAME_PATTERN

    schema = sql_text("schema.sql")
    assert schema.count(QUEUE_NAME_PATTERN) >= 2  # the CHECK and the enqueue function

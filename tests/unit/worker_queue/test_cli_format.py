"""Pure pieces of the ops CLI: tables (cli_format), option parsing (cli_commands),
the parser's help (cli), DSN redaction."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from workerfleet.worker import cli, cli_commands, cli_format
from workerfleet.worker.connector import redact_dsn
from workerfleet.worker.models import QueueStats, WorkerRow


def test_render_table_aligns_columns_and_shows_none_as_dash() -> None:
    table = cli_format.render_table(["A", "LONGER"], [["xyz", None], ["q", 12345678]])
    assert table.splitlines() == ["A    LONGER", "xyz  -", "q    12345678"]


def test_stats_table_has_a_row_per_queue() -> None:
    rows = [
        QueueStats("emails", 3, 1, 2, 10, 1, 0, 95.0, 4),
        QueueStats("reports", 0, 0, 0, 0, 0, 0, None, 0),
    ]
    lines = cli_format.stats_table(rows).splitlines()
    assert lines[1].split() == ["emails", "3", "1", "2", "10", "1", "0", "1m35s", "4"]
    assert lines[2].split() == ["reports", "0", "0", "0", "0", "0", "0", "-", "0"]
    assert cli_format.stats_table([]) == "no jobs"


def test_workers_table_shows_heartbeat_age() -> None:
    now = datetime(2030, 1, 1, 0, 1, 0, tzinfo=UTC)
    worker = WorkerRow(
        "w1", "p", ("a",), "pod", datetime(2030, 1, 1, tzinfo=UTC),
        datetime(2030, 1, 1, 0, 0, 30, tzinfo=UTC), "online", 2, 5, 1, "1.0",
    )  # fmt: skip
    [_, row] = cli_format.workers_table([worker], now).splitlines()
    assert row.split() == ["w1", "p", "online", "a", "2", "5", "1", "30s", "ago", "1.0"]


def test_short_error_keeps_the_first_line_within_the_column() -> None:
    assert cli_format.short_error("ValueError: x\nTraceback...") == "ValueError: x"
    long = cli_format.short_error("E" * 200)
    assert long is not None
    assert len(long) == cli_format.ERROR_COLUMN_MAX_CHARS
    assert long.endswith("...")
    assert cli_format.short_error(None) is None


def test_option_parsers_name_the_option() -> None:
    assert cli_commands.parse_payload('{"a": [1]}') == {"a": [1]}
    assert cli_commands.parse_payload(None) is None
    with pytest.raises(cli_commands.CliError, match=r"^--payload: not valid JSON"):
        cli_commands.parse_payload("{")
    assert cli_commands.parse_run_at("2030-01-01T00:00:00Z") == datetime(2030, 1, 1, tzinfo=UTC)
    with pytest.raises(cli_commands.CliError, match=r"^--run-at: .* has no timezone"):
        cli_commands.parse_run_at("2030-01-01T00:00:00")
    with pytest.raises(cli_commands.CliError, match=r"^--run-at: not an ISO 8601 time"):
        cli_commands.parse_run_at("tomorrow")
    assert cli_commands.parse_seconds("1m30s", "--delay") == 90.0
    with pytest.raises(cli_commands.CliError, match=r"^--delay: invalid duration"):
        cli_commands.parse_seconds("soon", "--delay")


def test_help_lists_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.build_parser().parse_args(["--help"])
    assert exited.value.code == 0
    printed = capsys.readouterr().out
    assert "3  database unreachable" in printed
    assert "WORKERFLEET_DSN" in printed


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("postgresql://u:s3cret@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgres://u:p%40ss@h/db?sslmode=require", "postgres://u:***@h/db?sslmode=require"),
        ("postgresql://h/db?user=u&password=s3cret", "postgresql://h/db?user=u&password=***"),
        ("host=h user=u password=s3cret dbname=d", "host=h user=u password=*** dbname=d"),
    ],
)
def test_redact_dsn_hides_passwords(dsn: str, expected: str) -> None:
    assert redact_dsn(dsn) == expected

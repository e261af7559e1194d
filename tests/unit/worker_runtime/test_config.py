from __future__ import annotations

import pytest

from workerfleet.worker.config import ConfigError, load_settings, worker_identity

BASE = {
    "WORKERFLEET_DSN": "postgresql://app:s3cret@db.example:5432/jobs",
    "WORKERFLEET_QUEUES": "emails",
    "WORKERFLEET_HANDLERS": "acme.jobs",
}


def test_defaults_match_the_contract() -> None:
    settings = load_settings(BASE)
    assert settings.queues == ("emails",)
    assert settings.pool == "default"
    assert settings.concurrency == 4
    assert settings.poll_interval == 1.0
    assert settings.heartbeat_interval == 5.0
    assert settings.lease_seconds == 15.0  # 3 x heartbeat
    assert settings.job_timeout == 600.0
    assert settings.retry_base == 1.0
    assert settings.retry_cap == 600.0
    assert settings.shutdown_grace == 30.0
    assert settings.health_port == 8080
    assert settings.bind_host == "0.0.0.0"
    assert settings.log_level == "INFO"
    assert settings.log_format == "json"
    assert settings.health_log_interval == 300.0
    assert settings.rescue_interval == 30.0
    assert settings.migrate is True


def test_durations_lists_and_booleans_are_parsed() -> None:
    settings = load_settings(
        {
            **BASE,
            "WORKERFLEET_QUEUES": "emails, reports,emails",
            "WORKERFLEET_POLL_INTERVAL": "250ms",
            "WORKERFLEET_HEARTBEAT_INTERVAL": "2s",
            "WORKERFLEET_LEASE_DURATION": "1m",
            "WORKERFLEET_JOB_TIMEOUT": "1h30m",
            "WORKERFLEET_SHUTDOWN_GRACE": "0",
            "WORKERFLEET_MIGRATE": "false",
            "WORKERFLEET_LOG_LEVEL": "warn",
            "WORKERFLEET_LOG_FORMAT": "TEXT",
        }
    )
    assert settings.queues == ("emails", "reports")
    assert settings.poll_interval == 0.25
    assert settings.lease_seconds == 60.0
    assert settings.job_timeout == 5400.0
    assert settings.shutdown_grace == 0.0
    assert settings.migrate is False
    assert settings.log_level == "WARNING"
    assert settings.log_format == "text"


def test_health_host_defaults_to_the_pod_ip_and_can_be_overridden() -> None:
    assert load_settings({**BASE, "POD_IP": "10.1.2.3"}).bind_host == "10.1.2.3"
    overridden = {**BASE, "POD_IP": "10.1.2.3", "WORKERFLEET_HEALTH_HOST": "127.0.0.1"}
    assert load_settings(overridden).bind_host == "127.0.0.1"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WORKERFLEET_CONCURRENCY", "many"),
        ("WORKERFLEET_CONCURRENCY", "0"),
        ("WORKERFLEET_POLL_INTERVAL", "5 minutes"),
        ("WORKERFLEET_HEARTBEAT_INTERVAL", "0"),
        ("WORKERFLEET_QUEUES", "Emails"),
        ("WORKERFLEET_QUEUES", " , "),
        ("WORKERFLEET_HANDLERS", "command:"),
        ("WORKERFLEET_HANDLERS", "not a module"),
        ("WORKERFLEET_HEALTH_PORT", "70000"),
        ("WORKERFLEET_LOG_LEVEL", "chatty"),
        ("WORKERFLEET_LOG_FORMAT", "xml"),
        ("WORKERFLEET_MIGRATE", "perhaps"),
        ("WORKERFLEET_DSN", "mysql://root@db/jobs"),
        ("WORKERFLEET_RETRY_JITTER", "some"),
        ("WORKERFLEET_EVENT_LOOP", "tokio"),
    ],
)
def test_a_bad_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE, variable: value})
    assert variable in str(caught.value)


def test_missing_required_variables_are_all_named() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({})
    message = str(caught.value)
    for variable in ("WORKERFLEET_DSN", "WORKERFLEET_QUEUES", "WORKERFLEET_HANDLERS"):
        assert f"{variable} is required" in message


def test_cross_field_rules() -> None:
    with pytest.raises(ConfigError, match="WORKERFLEET_LEASE_DURATION"):
        load_settings({**BASE, "WORKERFLEET_HEARTBEAT_INTERVAL": "10s",
                       "WORKERFLEET_LEASE_DURATION": "5s"})  # fmt: skip
    with pytest.raises(ConfigError, match="WORKERFLEET_RETRY_CAP"):
        load_settings({**BASE, "WORKERFLEET_RETRY_BASE": "1m", "WORKERFLEET_RETRY_CAP": "1s"})


def test_the_password_never_appears_in_errors_or_the_public_view() -> None:
    settings = load_settings(BASE)
    assert "s3cret" not in str(settings.public_view())
    assert settings.public_view()["database"] == "postgresql://app:***@db.example:5432/jobs"
    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE, "WORKERFLEET_DSN": "postgres:/app:s3cret@db"})
    assert "s3cret" not in str(caught.value)


def test_worker_identity_on_and_off_kubernetes() -> None:
    on_pod = worker_identity("emails-7d9f-x2", "0f1e2d3c-aaaa-bbbb", "ab12cd", "host", 7)
    assert on_pod == "emails-7d9f-x2-0f1e2d3c-ab12cd"
    assert worker_identity(None, None, "ab12cd", "laptop", 4242) == "laptop-4242-ab12cd"
    assert worker_identity("p", None, "n0", "h", 1) == "p-n0"


def test_the_event_loop_is_uvloop_unless_asked_otherwise() -> None:
    assert load_settings(BASE).event_loop == "uvloop"
    assert load_settings({**BASE, "WORKERFLEET_EVENT_LOOP": "AsyncIO"}).event_loop == "asyncio"


def test_tracing_is_configured_only_when_an_otel_variable_asks_for_it() -> None:
    from workerfleet.worker import tracing

    assert tracing.configure_from_environment({}) is None
    assert tracing.configure_from_environment({"OTEL_SERVICE_NAME": "mail"}) is None
    disabled = {"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}
    assert tracing.configure_from_environment(disabled) is None
    assert [type(e).__name__ for e in tracing._exporters("console, none, bogus")] == [
        "ConsoleSpanExporter"
    ]

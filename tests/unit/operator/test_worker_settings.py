"""spec.worker and the worker's own settings (worker/config.py) are one set of facts:
same settings, same defaults, and the variables the Deployment sets are the ones the
worker reads."""

from __future__ import annotations

from typing import Any

from tests.unit.operator.conftest import spec_dict
from workerfleet.durations import parse_duration
from workerfleet.operator import builders, models
from workerfleet.worker import config as worker_config

WORKER_FIELDS = worker_config.WorkerSettings.model_fields
# Durations are text in the API ("10m") and seconds in the worker (600.0).
DURATIONS = {
    "poll_interval",
    "heartbeat_interval",
    "lease_duration",
    "job_timeout",
    "retry_base",
    "retry_cap",
    "shutdown_grace",
    "health_log_interval",
}
# Given a value by the operator from elsewhere than spec.worker (or not at all).
NOT_FROM_SPEC_WORKER = {
    "dsn",
    "queues",
    "pool",
    "health_host",
    "health_port",
    "event_loop",
    # The workers' fallback rescue: the Monitor runs the primary one; the worker's default.
    "rescue_interval",
    "pod_name",
    "pod_uid",
    "pod_ip",
}


def as_worker_value(field: str, value: Any) -> Any:
    if field in DURATIONS and value is not None:
        return parse_duration(value)
    return value


def test_every_spec_worker_field_is_a_worker_setting() -> None:
    named = set(models.WorkerSettings(handlers="acme.jobs").by_worker_setting())
    assert named <= set(WORKER_FIELDS)
    assert named | NOT_FROM_SPEC_WORKER == set(WORKER_FIELDS)


def test_the_operators_defaults_are_the_workers() -> None:
    for name, field in models.WorkerSettings.model_fields.items():
        if field.is_required():
            continue
        worker_name = models.WORKER_SETTING_OF.get(name, name)
        operator_default = as_worker_value(worker_name, field.get_default())
        assert operator_default == WORKER_FIELDS[worker_name].get_default(), name


def worker_settings_from(spec: models.WorkerPoolSpec) -> worker_config.WorkerSettings:
    """What a worker of this pool reads from the environment the Deployment gives it."""
    owner = builders.Owner(name="emails", namespace="mail", uid="u-1")
    environ = {
        "WORKERFLEET_DSN": "postgresql://app@db:5432/q",
        "POD_NAME": "emails-abc",
        "POD_UID": "u-2",
        "POD_IP": "10.0.0.7",
    }
    for entry in builders.worker_env(spec, owner):
        if "value" in entry:
            environ[entry["name"]] = entry["value"]
    return worker_config.load_settings(environ)


def test_a_worker_reads_back_every_setting_of_the_spec() -> None:
    chosen = {
        "handlers": "command:/app/handle",
        "concurrency": 7,
        "pollInterval": "250ms",
        "heartbeatInterval": "2s",
        "leaseDuration": "9s",
        "jobTimeout": "3m",
        "maxAttempts": 11,
        "retryBase": "3s",
        "retryCap": "2m",
        "retryJitter": "full",
        "shutdownGracePeriod": "45s",
        "logLevel": "DEBUG",
        "logFormat": "text",
        "healthLogInterval": "1m",
        "migrate": False,
    }
    spec = models.WorkerPoolSpec.model_validate(spec_dict(worker=chosen))
    assert set(chosen) == {field.alias for field in models.WorkerSettings.model_fields.values()}, (
        "choose a value for every spec.worker field"
    )
    read = worker_settings_from(spec)
    for name, value in spec.worker.by_worker_setting().items():
        default = WORKER_FIELDS[name].get_default()
        assert getattr(read, name) == as_worker_value(name, value) != default, name
    assert (read.queues, read.pool, read.health_port) == (("emails",), "mail/emails", 8080)


def test_a_worker_of_a_default_spec_runs_with_the_workers_defaults() -> None:
    spec = models.WorkerPoolSpec.model_validate(spec_dict())
    read = worker_settings_from(spec)
    for name in spec.worker.by_worker_setting():
        if name != "handlers":
            assert getattr(read, name) == WORKER_FIELDS[name].get_default(), name

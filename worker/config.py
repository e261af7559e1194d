"""The worker's configuration: environment variables, validated once at start.

The operator's Deployment builder sets exactly these variables; a person running
``workerfleet-worker`` by hand sets the same ones. This module is the one source
of their names and defaults: the operator's ``spec.worker`` takes its defaults
from :func:`default_of` and its variable names from :func:`variable_of`. Every
error names the variable to fix, because the only place a bad value can be seen
is the pod's log.
"""

from __future__ import annotations

import contextvars
import os
import re
import secrets
import socket
from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

import pydantic
from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

from workerfleet.durations import Seconds
from workerfleet.worker.connector import redact_dsn
from workerfleet.worker.models import DEFAULT_MAX_ATTEMPTS, QUEUE_NAME_PATTERN
from workerfleet.worker.retry import Jitter

ENV_PREFIX = "WORKERFLEET_"
COMMAND_HANDLER_PREFIX = "command:"
LEASE_HEARTBEATS = 3  # default lease = this many heartbeat intervals
MAX_CONCURRENCY = 1000
NONCE_BYTES = 3
POD_UID_SHORT_CHARS = 8
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)
LogFormat = Literal["json", "text"]

_QUEUE_NAME = re.compile(QUEUE_NAME_PATTERN)

# Fields read without the WORKERFLEET_ prefix (set by the Kubernetes downward API).
_UNPREFIXED = {"pod_name": "POD_NAME", "pod_uid": "POD_UID", "pod_ip": "POD_IP"}
UNPREFIXED_VARIABLES = tuple(_UNPREFIXED.values())
_ENVIRON: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "workerfleet_worker_environ", default=None
)


class ConfigError(ValueError):
    """Configuration that cannot work; the message names the variable(s) to fix."""


class WorkerSettings(BaseSettings):
    """Every setting of one worker process; durations are in seconds."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", frozen=True, case_sensitive=True
    )

    dsn: str = Field(alias="WORKERFLEET_DSN")
    queues: Annotated[tuple[str, ...], NoDecode] = Field(alias="WORKERFLEET_QUEUES")
    pool: str = Field("default", alias="WORKERFLEET_POOL", min_length=1, max_length=200)
    handlers: str = Field(alias="WORKERFLEET_HANDLERS", min_length=1)
    concurrency: int = Field(4, alias="WORKERFLEET_CONCURRENCY", ge=1, le=MAX_CONCURRENCY)
    poll_interval: Seconds = Field(1.0, alias="WORKERFLEET_POLL_INTERVAL", gt=0)
    heartbeat_interval: Seconds = Field(5.0, alias="WORKERFLEET_HEARTBEAT_INTERVAL", gt=0)
    lease_duration: Seconds | None = Field(None, alias="WORKERFLEET_LEASE_DURATION", gt=0)
    job_timeout: Seconds = Field(600.0, alias="WORKERFLEET_JOB_TIMEOUT", gt=0)
    # For jobs enqueued without their own: the claim gives them this (queries.sql, claim).
    max_attempts: int = Field(DEFAULT_MAX_ATTEMPTS, alias="WORKERFLEET_MAX_ATTEMPTS", ge=1)
    retry_base: Seconds = Field(1.0, alias="WORKERFLEET_RETRY_BASE", ge=0)
    retry_cap: Seconds = Field(600.0, alias="WORKERFLEET_RETRY_CAP", ge=0)
    retry_jitter: Jitter = Field("equal", alias="WORKERFLEET_RETRY_JITTER")
    shutdown_grace: Seconds = Field(30.0, alias="WORKERFLEET_SHUTDOWN_GRACE", ge=0)
    health_host: str | None = Field(None, alias="WORKERFLEET_HEALTH_HOST")
    health_port: int = Field(8080, alias="WORKERFLEET_HEALTH_PORT", ge=1, le=65535)
    log_level: str = Field("INFO", alias="WORKERFLEET_LOG_LEVEL")
    log_format: LogFormat = Field("json", alias="WORKERFLEET_LOG_FORMAT")
    health_log_interval: Seconds = Field(300.0, alias="WORKERFLEET_HEALTH_LOG_INTERVAL", gt=0)
    migrate: bool = Field(True, alias="WORKERFLEET_MIGRATE")
    # How often the workers' fallback rescue of expired leases runs (one worker per
    # database at a time, so a queue without a Monitor never keeps a job stuck);
    # 0 turns it off.
    rescue_interval: Seconds = Field(30.0, alias="WORKERFLEET_RESCUE_INTERVAL", ge=0)
    # uvloop cuts the loop's own cost per job by about a fifth; asyncio is the fallback.
    event_loop: Literal["uvloop", "asyncio"] = Field("uvloop", alias="WORKERFLEET_EVENT_LOOP")
    pod_name: str | None = Field(None, alias="POD_NAME")
    pod_uid: str | None = Field(None, alias="POD_UID")
    pod_ip: str | None = Field(None, alias="POD_IP")

    @field_validator("dsn")
    @classmethod
    def _dsn_is_a_postgres_url(cls, value: str) -> str:
        if not value.startswith(("postgres://", "postgresql://")):
            raise ValueError("must be a URL such as postgresql://user:password@host:5432/db")
        return value

    @field_validator("queues", mode="before")
    @classmethod
    def _split_queues(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple):
            if not value:
                raise ValueError("name at least one queue (a comma-separated list)")
            for name in value:
                if not isinstance(name, str) or not _QUEUE_NAME.match(name):
                    raise ValueError(
                        f"invalid queue name {name!r}: use lower-case letters, digits, "
                        "'_', '.', '-', starting with a letter or digit, at most 63 characters"
                    )
            return tuple(dict.fromkeys(value))
        return value

    @field_validator("handlers")
    @classmethod
    def _handlers_spec(cls, value: str) -> str:
        value = value.strip()
        if value.startswith(COMMAND_HANDLER_PREFIX):
            if not value[len(COMMAND_HANDLER_PREFIX) :].strip():
                raise ValueError("'command:' must be followed by the program to run")
        elif not re.match(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$", value):
            raise ValueError(
                f"{value!r} is neither a Python module path (such as acme.jobs) "
                "nor 'command:<program and arguments>'"
            )
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().upper()
            if value == "WARN":
                value = "WARNING"
            if value not in LOG_LEVELS:
                raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return value

    @field_validator("log_format", "retry_jitter", "event_loop", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _cross_field(self) -> WorkerSettings:
        if self.lease_duration is not None and self.lease_duration <= self.heartbeat_interval:
            raise ValueError(
                "WORKERFLEET_LEASE_DURATION must be longer than WORKERFLEET_HEARTBEAT_INTERVAL "
                f"({self.lease_duration}s <= {self.heartbeat_interval}s), or a heartbeat "
                "could arrive after the lease already expired"
            )
        if self.retry_cap < self.retry_base:
            raise ValueError(
                "WORKERFLEET_RETRY_CAP must be at least WORKERFLEET_RETRY_BASE "
                f"({self.retry_cap}s < {self.retry_base}s)"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        environ = _ENVIRON.get()
        if environ is None:
            return (env_settings,)
        return (_MappingEnvSource(settings_cls, environ),)

    # Derived values: resolved here once, not at every use site.

    @property
    def lease_seconds(self) -> float:
        if self.lease_duration is not None:
            return self.lease_duration
        return LEASE_HEARTBEATS * self.heartbeat_interval

    @property
    def bind_host(self) -> str:
        return self.health_host or self.pod_ip or "0.0.0.0"

    @property
    def uses_command_handler(self) -> bool:
        return self.handlers.startswith(COMMAND_HANDLER_PREFIX)

    def public_view(self) -> dict[str, Any]:
        """The configuration as the /health report shows it: no secret in it."""
        return {
            "pool": self.pool,
            "queues": list(self.queues),
            "handlers": self.handlers,
            "concurrency": self.concurrency,
            "pollInterval": self.poll_interval,
            "heartbeatInterval": self.heartbeat_interval,
            "leaseDuration": self.lease_seconds,
            "jobTimeout": self.job_timeout,
            "maxAttempts": self.max_attempts,
            "retryBase": self.retry_base,
            "retryCap": self.retry_cap,
            "retryJitter": self.retry_jitter,
            "shutdownGrace": self.shutdown_grace,
            "healthLogInterval": self.health_log_interval,
            "migrate": self.migrate,
            "rescueInterval": self.rescue_interval,
            "eventLoop": self.event_loop,
            "database": redact_dsn(self.dsn),
        }


def variable_of(field: str) -> str:
    """The environment variable that sets ``field`` of :class:`WorkerSettings`."""
    alias = WorkerSettings.model_fields[field].alias
    if alias is None:
        raise KeyError(f"WorkerSettings.{field} has no environment variable")
    return alias


def default_of(field: str) -> Any:
    """The worker's default for ``field`` of :class:`WorkerSettings` (durations in seconds)."""
    return WorkerSettings.model_fields[field].get_default(call_default_factory=True)


class _MappingEnvSource(EnvSettingsSource):
    """Reads a given mapping instead of os.environ (so parsing is a pure function)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


def _variable_name(location: tuple[int | str, ...]) -> str:
    if not location:
        return "configuration"
    head = str(location[0])
    if head.isupper():
        return head
    return _UNPREFIXED.get(head, ENV_PREFIX + head.upper())


def _describe(error: Any, environ: Mapping[str, str]) -> str:
    variable = _variable_name(tuple(error["loc"]))
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "missing":
        return f"{variable} is required but not set"
    if variable == "configuration":
        return message
    shown = environ.get(variable)
    if shown is not None and variable != "WORKERFLEET_DSN":
        return f"{variable}={shown!r}: {message}"
    return f"{variable}: {message}"


def load_settings(environ: Mapping[str, str] | None = None) -> WorkerSettings:
    """Parse and validate ``environ`` (default: the process environment).

    Raises ConfigError with one line per problem, each naming its variable.
    """
    source = dict(os.environ if environ is None else environ)
    token = _ENVIRON.set(source)
    try:
        return WorkerSettings()
    except pydantic.ValidationError as exc:
        problems = [_describe(error, source) for error in exc.errors()]
        raise ConfigError("; ".join(problems)) from None
    finally:
        _ENVIRON.reset(token)


def worker_identity(
    pod_name: str | None, pod_uid: str | None, nonce: str, hostname: str, pid: int
) -> str:
    """pod name + short pod uid + start nonce; hostname + pid outside Kubernetes.

    The nonce makes every start a new identity, so a restarted container never
    inherits (and never completes) the jobs of its previous life.
    """
    if pod_name:
        uid = (pod_uid or "").replace("-", "")[:POD_UID_SHORT_CHARS]
        parts = [pod_name, uid, nonce] if uid else [pod_name, nonce]
    else:
        parts = [hostname, str(pid), nonce]
    return "-".join(parts)


def new_worker_id(settings: WorkerSettings) -> str:
    return worker_identity(
        settings.pod_name,
        settings.pod_uid,
        secrets.token_hex(NONCE_BYTES),
        socket.gethostname(),
        os.getpid(),
    )

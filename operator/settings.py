"""The operator's own settings: environment variables (WORKERFLEET_OPERATOR_*) and flags.

Validated once at start; a bad value exits with a message naming the variable.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from workerfleet.durations import Seconds
from workerfleet.operator.lease import Timing

ENV_PREFIX = "WORKERFLEET_OPERATOR_"


class OperatorSettings(BaseSettings):
    """Durations are in seconds once parsed."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    namespaces: Annotated[tuple[str, ...], NoDecode] = ()
    """Namespaces to serve (comma list); empty serves all namespaces."""
    health_host: str = "0.0.0.0"
    health_port: int = Field(8080, ge=1, le=65535)
    """Port of /healthz (liveness), /readyz and /metrics."""
    dead_worker_after: Seconds = Field(60.0, gt=0)
    """A worker silent this long counts as dead in a pool's status."""
    tick_stale_after: Seconds = Field(60.0, gt=0)
    """Liveness fails when pools or Monitors exist and the scheduler did not wake for this
    long."""
    status_refresh: Literal["events", "interval"] = "events"
    """events: a pool's status is written as soon as its queue figures (a NOTIFY, the
    database's stats round every second), pods or Deployment change, at most one write of
    mere figures per pool a second; interval: only every status_resync_interval (fewer status
    writes for busy pools, a staler status; NOTIFYs still scale at once)."""
    status_resync_interval: Seconds = Field(60.0, gt=0)
    """Longest time between two syncs of a pool when nothing asks for one (with
    status_refresh=interval: the status cadence)."""
    watch_silence_after: Seconds = Field(90.0, gt=0)
    """Liveness fails when a written status has not come back through the watch for this long."""
    watch_server_timeout: Seconds = Field(300.0, gt=0)
    """Ask the API server to end each watch request after this long (kopf re-watches)."""
    watch_inactivity_timeout: Seconds = Field(600.0, gt=0)
    """Reconnect a watch stream on which nothing (not even a bookmark) arrived for this long."""
    request_timeout: Seconds = Field(30.0, gt=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    leader_election: bool = False
    """Act only while holding a Lease, so replicas stand by (the chart turns it on)."""
    lease_name: str = "workerfleet-operator"
    lease_namespace: str = ""
    """Where the Lease lives; empty: the namespace of the operator's pod."""
    lease_duration: Seconds = Field(8.0, gt=0)
    """How long a standby waits for a leader that stopped renewing."""
    renew_deadline: Seconds = Field(5.0, gt=0)
    """How long the leader keeps acting while it cannot renew (it stops before others start)."""
    retry_period: Seconds = Field(1.0, gt=0)
    """How often the leader renews and a standby tries to take over."""
    pod_name: str = ""
    """The start of this process's identity in the Lease; empty: the host name."""

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @property
    def lease_timing(self) -> Timing:
        return Timing(self.lease_duration, self.renew_deadline, self.retry_period)

    @model_validator(mode="after")
    def _timing_is_safe(self) -> OperatorSettings:
        problem = self.lease_timing.problem()
        if self.leader_election and problem is not None:
            raise ValueError(problem)
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

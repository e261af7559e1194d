"""Probe specs and probe decisions of the local node agent (pure).

A probe's result flips only after `successThreshold` consecutive successes or
`failureThreshold` consecutive failures, as in the kubelet's prober worker. Readiness
and startup start out failed, liveness starts out successful.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

ProbeKind = Literal["httpGet", "tcpSocket", "exec", "grpc"]
ProbeRole = Literal["liveness", "readiness", "startup"]

DEFAULT_PERIOD_SECONDS = 10.0
DEFAULT_TIMEOUT_SECONDS = 1.0
DEFAULT_SUCCESS_THRESHOLD = 1
DEFAULT_FAILURE_THRESHOLD = 3


class ProbeConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ProbeSpec:
    kind: ProbeKind
    initial_delay_seconds: float
    period_seconds: float
    timeout_seconds: float
    success_threshold: int
    failure_threshold: int
    termination_grace_period_seconds: float | None
    host: str | None = None
    port: int | str | None = None
    path: str = "/"
    scheme: str = "HTTP"
    headers: tuple[tuple[str, str], ...] = ()
    command: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, probe: Mapping[str, Any]) -> ProbeSpec:
        """Parses a container's probe; apiserver defaults are re-applied here so a spec
        that skipped defaulting behaves the same."""
        timing: dict[str, Any] = {
            "initial_delay_seconds": float(probe.get("initialDelaySeconds") or 0),
            "period_seconds": float(probe.get("periodSeconds") or DEFAULT_PERIOD_SECONDS),
            "timeout_seconds": float(probe.get("timeoutSeconds") or DEFAULT_TIMEOUT_SECONDS),
            "success_threshold": int(probe.get("successThreshold") or DEFAULT_SUCCESS_THRESHOLD),
            "failure_threshold": int(probe.get("failureThreshold") or DEFAULT_FAILURE_THRESHOLD),
            "termination_grace_period_seconds": (
                float(probe["terminationGracePeriodSeconds"])
                if probe.get("terminationGracePeriodSeconds") is not None
                else None
            ),
        }
        if probe.get("httpGet") is not None:
            http = probe["httpGet"]
            return cls(
                kind="httpGet",
                host=http.get("host") or None,
                port=http.get("port"),
                path=http.get("path") or "/",
                scheme=(http.get("scheme") or "HTTP").upper(),
                headers=tuple(
                    (str(h.get("name", "")), str(h.get("value", "")))
                    for h in http.get("httpHeaders") or []
                ),
                **timing,
            )
        if probe.get("tcpSocket") is not None:
            tcp = probe["tcpSocket"]
            return cls(
                kind="tcpSocket", host=tcp.get("host") or None, port=tcp.get("port"), **timing
            )
        if probe.get("exec") is not None:
            command = tuple(str(part) for part in probe["exec"].get("command") or [])
            if not command:
                raise ProbeConfigError("exec probe has no command")
            return cls(kind="exec", command=command, **timing)
        if probe.get("grpc") is not None:
            return cls(kind="grpc", port=probe["grpc"].get("port"), **timing)
        raise ProbeConfigError(f"probe has no handler (httpGet, tcpSocket, exec, grpc): {probe}")


def resolve_port(port: int | str | None, container: Mapping[str, Any]) -> int:
    """A probe port as a number: a number (or numeric string) as is, a name looked up
    among the container's ports."""
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    ports: Sequence[Mapping[str, Any]] = container.get("ports") or []
    for entry in ports:
        if port is not None and entry.get("name") == port:
            return int(entry["containerPort"])
    names = [entry.get("name") for entry in ports if entry.get("name")]
    raise ProbeConfigError(
        f"probe port {port!r} is neither a number nor a named port of container "
        f"{container.get('name')!r} (named ports: {names})"
    )


@dataclass(frozen=True)
class ProbeTracker:
    """The probe's current verdict and the streak that leads to the next flip."""

    result: bool
    successes: int = 0
    failures: int = 0
    observed: int = 0

    @classmethod
    def initial(cls, role: ProbeRole) -> ProbeTracker:
        return cls(result=role == "liveness")

    def observe(self, success: bool, spec: ProbeSpec) -> ProbeTracker:
        """The tracker after one probe outcome."""
        if success:
            successes = self.successes + 1
            result = True if successes >= spec.success_threshold else self.result
            return replace(
                self, result=result, successes=successes, failures=0, observed=self.observed + 1
            )
        failures = self.failures + 1
        result = False if failures >= spec.failure_threshold else self.result
        return replace(
            self, result=result, successes=0, failures=failures, observed=self.observed + 1
        )


def first_probe_at(container_started: float, spec: ProbeSpec) -> float:
    """When (monotonic seconds) the first probe runs."""
    return container_started + spec.initial_delay_seconds


def next_probe_at(last_probe_started: float, spec: ProbeSpec) -> float:
    return last_probe_started + spec.period_seconds


def is_http_success(status: int) -> bool:
    """The kubelet's rule: 2xx and 3xx succeed."""
    return 200 <= status < 400

"""Runs one probe for real (effects): HTTP GET or TCP connect against the pod's own
loopback address, or a command in the container's environment."""

from __future__ import annotations

import contextlib
import http.client
import logging
import signal
import socket
import ssl
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from localcluster.nodeagent.probes import ProbeConfigError, ProbeSpec, is_http_success, resolve_port
from localcluster.nodeagent.process_groups import signal_group

log = logging.getLogger("node-agent")

PROBE_USER_AGENT = "kube-probe/local-node-agent"
PROBE_BODY_LIMIT_BYTES = 10 * 1024


@dataclass(frozen=True)
class ProbeOutcome:
    success: bool
    message: str = ""


@dataclass(frozen=True)
class ProbeContext:
    """Where and how the container's probes run."""

    pod_ip: str
    container: Mapping[str, Any]
    env: Mapping[str, str]
    cwd: str | None


def run_probe(spec: ProbeSpec, context: ProbeContext) -> ProbeOutcome:
    try:
        if spec.kind == "httpGet":
            return _http_probe(spec, context)
        if spec.kind == "tcpSocket":
            return _tcp_probe(spec, context)
        if spec.kind == "exec":
            return _exec_probe(spec, context)
    except ProbeConfigError as error:
        return ProbeOutcome(False, str(error))
    # gRPC health checking would need grpcio; the agent does not pretend to fail it.
    return ProbeOutcome(True, "grpc probes are not run by the local node agent")


def _http_probe(spec: ProbeSpec, context: ProbeContext) -> ProbeOutcome:
    host = spec.host or context.pod_ip
    port = resolve_port(spec.port, context.container)
    connection: http.client.HTTPConnection
    if spec.scheme == "HTTPS":
        # The kubelet does not verify probe certificates either.
        connection = http.client.HTTPSConnection(
            host, port, timeout=spec.timeout_seconds, context=ssl._create_unverified_context()
        )
    else:
        connection = http.client.HTTPConnection(host, port, timeout=spec.timeout_seconds)
    headers = {"User-Agent": PROBE_USER_AGENT, "Accept": "*/*"}
    headers.update(dict(spec.headers))
    try:
        connection.request("GET", spec.path, headers=headers)
        response = connection.getresponse()
        body = response.read(PROBE_BODY_LIMIT_BYTES)
    except (OSError, http.client.HTTPException) as error:
        return ProbeOutcome(
            False, f'Get "{spec.scheme.lower()}://{host}:{port}{spec.path}": {error}'
        )
    finally:
        connection.close()
    if is_http_success(response.status):
        return ProbeOutcome(True)
    return ProbeOutcome(
        False,
        f"HTTP probe failed with statuscode: {response.status} "
        f"{body[:200].decode('utf-8', 'replace')}".strip(),
    )


def _tcp_probe(spec: ProbeSpec, context: ProbeContext) -> ProbeOutcome:
    host = spec.host or context.pod_ip
    port = resolve_port(spec.port, context.container)
    try:
        with socket.create_connection((host, port), timeout=spec.timeout_seconds):
            return ProbeOutcome(True)
    except OSError as error:
        return ProbeOutcome(False, f"dial tcp {host}:{port}: {error}")


def _exec_probe(spec: ProbeSpec, context: ProbeContext) -> ProbeOutcome:
    try:
        process = subprocess.Popen(
            list(spec.command),
            env=dict(context.env),
            cwd=context.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as error:
        return ProbeOutcome(False, f"exec probe {list(spec.command)}: {error}")
    try:
        output, _ = process.communicate(timeout=spec.timeout_seconds)
    except subprocess.TimeoutExpired:
        signal_group(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.communicate(timeout=5.0)
        return ProbeOutcome(False, f"command timed out after {spec.timeout_seconds:g}s")
    if process.returncode == 0:
        return ProbeOutcome(True)
    text = output.decode("utf-8", "replace").strip()[:200]
    return ProbeOutcome(False, f"command exited {process.returncode}: {text}")

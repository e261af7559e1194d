"""The monitoring example's tasks (examples/monitoring/monitoring_checks.py) against loopback
servers: an HTTP target up, one refusing connections, one answering 404; a TLS target with a
certificate made here, checked with and without trusting it."""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from localcluster.loopback import LOOPBACK, free_port
from tests.loopback_servers import (
    CERT_DAYS,
    http_server,
    self_signed_certificate,
    server_tls,
)
from workerfleet.worker.tasks import JobContext, PermanentError, registry_from_module

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "monitoring" / "monitoring_checks.py"


@pytest.fixture(scope="module")
def checks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("monitoring_checks", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def context(task: str) -> JobContext:
    return JobContext(
        job_id=1,
        attempt=1,
        max_attempts=1,
        queue="monitoring",
        task=task,
        worker_id="test",
        logger=logging.LoggerAdapter(logging.getLogger("test")),
    )


def test_the_module_declares_the_two_tasks(checks: ModuleType) -> None:
    assert set(registry_from_module(checks)) == {"http_check", "ssl_expiry_check"}


async def test_http_check_reports_each_target(checks: ModuleType) -> None:
    with http_server() as server:
        payload: dict[str, Any] = {
            "targets": [
                {"url": server.url("/health")},
                {"url": server.url("/missing")},
                {"url": f"http://{LOOPBACK}:{free_port()}/health", "timeoutSeconds": 5},
            ]
        }
        result = await checks.http_check(context("http_check"), payload)
    up, missing, refused = result["results"]
    assert (result["checked"], result["up"]) == (3, 1)
    assert (up["ok"], up["status"], up["error"]) == (True, 200, None)
    assert up["responseTimeMs"] >= 0
    assert (missing["ok"], missing["status"], missing["error"]) == (False, 404, "status 404")
    assert (refused["ok"], refused["status"]) == (False, None)
    assert "Connect" in refused["error"]


async def test_ssl_expiry_check_reads_the_certificate_it_trusts(
    checks: ModuleType, tmp_path: Path
) -> None:
    cert, key = self_signed_certificate(tmp_path)
    with http_server(server_tls(cert, key)) as server:
        target = {"host": LOOPBACK, "port": server.port}
        trusted = {**target, "caFile": str(cert), "warnDays": CERT_DAYS + 1}
        result = await checks.ssl_expiry_check(
            context("ssl_expiry_check"), {"targets": [trusted, target]}
        )
    valid, untrusted = result["results"]
    assert valid["valid"] is True
    assert CERT_DAYS - 1 < valid["daysLeft"] <= CERT_DAYS
    assert valid["warning"] is True  # expires within warnDays
    assert (untrusted["valid"], untrusted["warning"]) == (False, True)
    assert "certificate not valid" in untrusted["error"]


async def test_a_payload_that_cannot_work_fails_the_job_at_once(checks: ModuleType) -> None:
    with pytest.raises(PermanentError, match="targets"):
        await checks.http_check(context("http_check"), {"urls": []})
    with pytest.raises(PermanentError, match="must start with http"):
        await checks.http_check(context("http_check"), {"targets": [{"url": "ftp://x"}]})

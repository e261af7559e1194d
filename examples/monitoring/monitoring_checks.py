"""The monitoring worker of seed 002 (HTTP health checks and SSL-expiry checks), as tasks.

Where that service ran its own cron scheduler, a WorkerPool's schedules enqueue
these tasks (``workerpool.yaml`` beside this file: every minute), and the
pool's workers run them: a missed minute, a crashed worker or a second replica
never doubles nor loses a check.

``http_check`` payload::

    {"targets": [{"url": "https://shop.example/health", "timeoutSeconds": 10,
                  "expectStatus": 200}]}

``ssl_expiry_check`` payload::

    {"targets": [{"host": "shop.example", "port": 443, "warnDays": 14,
                  "caFile": "/etc/ssl/private-ca.pem"}]}

A target that is down or whose certificate fails is a result, not a failed
job (the seed stored both in monitor_checks): the job's result lists every
target. Only a payload that cannot work fails the job, at once.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aiohttp

from workerfleet.worker.tasks import JobContext, PermanentError, task

# The seed's executor ran ten checks at a time.
CONCURRENCY = 10
DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_WARN_DAYS = 14
SECONDS_PER_DAY = 86400.0

T = TypeVar("T")


def _targets(payload: Any) -> list[dict[str, Any]]:
    targets = payload.get("targets") if isinstance(payload, dict) else None
    if not isinstance(targets, list) or not all(isinstance(t, dict) for t in targets):
        raise PermanentError('the payload needs "targets": a list of objects')
    return targets


async def _bounded(items: Sequence[dict[str, Any]], check: Callable[..., Awaitable[T]]) -> list[T]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(item: dict[str, Any]) -> T:
        async with gate:
            return await check(item)

    return list(await asyncio.gather(*(one(item) for item in items)))


@task()
async def http_check(ctx: JobContext, payload: Any) -> dict[str, Any]:
    """GET each target URL: status code, response time, connection errors."""
    targets = _targets(payload)
    async with aiohttp.ClientSession() as session:
        results = await _bounded(targets, lambda target: _check_url(session, target))
    down = [r["url"] for r in results if not r["ok"]]
    if down:
        ctx.logger.warning("targets down", extra={"down": down})
    return {"checked": len(results), "up": len(results) - len(down), "results": results}


async def _check_url(session: aiohttp.ClientSession, target: dict[str, Any]) -> dict[str, Any]:
    url = str(target.get("url", ""))
    if not url.startswith(("http://", "https://")):
        raise PermanentError(f"target url {url!r} must start with http:// or https://")
    timeout = aiohttp.ClientTimeout(
        total=float(target.get("timeoutSeconds", DEFAULT_TIMEOUT_SECONDS))
    )
    expected = target.get("expectStatus")
    started = time.monotonic()
    try:
        async with session.get(url, timeout=timeout) as response:
            await response.read()
            status = response.status
    except (aiohttp.ClientError, TimeoutError, OSError) as error:
        return {
            "url": url,
            "ok": False,
            "status": None,
            "responseTimeMs": _elapsed_ms(started),
            "error": f"{type(error).__name__}: {error}" if str(error) else type(error).__name__,
        }
    ok = status == expected if expected is not None else status < 400
    return {
        "url": url,
        "ok": ok,
        "status": status,
        "responseTimeMs": _elapsed_ms(started),
        "error": None if ok else f"status {status}",
    }


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


@task()
async def ssl_expiry_check(ctx: JobContext, payload: Any) -> dict[str, Any]:
    """Connect over TLS to each target: is the certificate valid, and for how long."""
    results = await _bounded(_targets(payload), _check_certificate)
    expiring = [r["host"] for r in results if r["warning"]]
    if expiring:
        ctx.logger.warning("certificates expiring or invalid", extra={"hosts": expiring})
    return {"checked": len(results), "results": results}


async def _check_certificate(target: dict[str, Any]) -> dict[str, Any]:
    host = str(target.get("host", ""))
    if not host:
        raise PermanentError('each target needs a "host"')
    port = int(target.get("port", 443))
    warn_days = float(target.get("warnDays", DEFAULT_WARN_DAYS))
    timeout = float(target.get("timeoutSeconds", DEFAULT_TIMEOUT_SECONDS))
    context = ssl.create_default_context(cafile=target.get("caFile"))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    result: dict[str, Any] = {"host": host, "port": port}
    try:
        certificate = await asyncio.wait_for(_peer_certificate(host, port, context), timeout)
    except (ssl.SSLError, OSError, TimeoutError) as error:
        return {**result, "valid": False, "warning": True, "error": _describe(error)}
    expires = ssl.cert_time_to_seconds(certificate["notAfter"])
    days_left = (expires - time.time()) / SECONDS_PER_DAY
    return {
        **result,
        "valid": True,
        "expiresAt": certificate["notAfter"],
        "daysLeft": round(days_left, 2),
        "warning": days_left < warn_days,
        "error": None,
    }


async def _peer_certificate(host: str, port: int, context: ssl.SSLContext) -> dict[str, Any]:
    _, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=host)
    try:
        certificate: dict[str, Any] = writer.get_extra_info("peercert")
        return certificate
    finally:
        writer.close()
        await writer.wait_closed()


def _describe(error: BaseException) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate not valid: {error.verify_message}"
    if isinstance(error, TimeoutError):
        return "timed out"
    return f"{type(error).__name__}: {error}"

"""One delivery attempt: a JSON POST, and what came of it in words safe to publish.

The webhook URL is a credential (Slack and Discord put the token in its
path), so :class:`Attempt` describes an outcome by HTTP status or by the kind
of error only; nothing here logs, and nothing returned contains the URL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

USER_AGENT = "workerfleet-operator"
# Statuses worth another attempt: the receiver is overloaded, restarting or rate limiting.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Attempt:
    """The outcome of one POST."""

    status: int | None
    """The HTTP status, None when no response came."""
    error: str | None = None
    """Why no response came, in words without the URL."""
    retry_after_seconds: float | None = None
    """The receiver's Retry-After, when it sent one with a 429 or 503."""

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        if self.status is None:
            return True  # timeouts and connection errors pass
        return self.status in RETRYABLE_STATUSES

    @property
    def status_class(self) -> str:
        """For metrics: 2xx ... 5xx, or timeout or error."""
        if self.status is not None:
            return f"{self.status // 100}xx"
        return (
            "timeout" if self.error is not None and self.error.startswith("timed out") else "error"
        )

    def describe(self) -> str:
        if self.status is not None:
            return f"HTTP {self.status} from the webhook"
        return self.error or "no response from the webhook"


def retry_after_seconds(header: str | None, now: datetime) -> float | None:
    """A Retry-After delay (delta-seconds or an HTTP date); None if absent or unreadable."""
    if header is None or not header.strip():
        return None
    text = header.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def describe_error(error: BaseException, timeout_seconds: float) -> str:
    """An exception of aiohttp or the OS, as words that never include the URL or host."""
    if isinstance(error, TimeoutError):
        return f"timed out after {timeout_seconds:g}s"
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        return "TLS certificate of the webhook's host not trusted"
    if isinstance(error, aiohttp.ClientConnectorError):
        reason = error.os_error.strerror or type(error.os_error).__name__
        return f"cannot connect to the webhook's host ({reason})"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "the webhook's host closed the connection without answering"
    if isinstance(error, aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        return f"bad response from the webhook ({type(error).__name__})"
    return f"request failed ({type(error).__name__})"


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    body: Mapping[str, Any],
    timeout_seconds: float,
    now: datetime | None = None,
) -> Attempt:
    """POST ``body`` as JSON to ``url`` within ``timeout_seconds``; never raises for HTTP
    or network trouble."""
    data = json.dumps(body, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    try:
        async with session.post(
            url,
            data=data,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout_seconds),
            allow_redirects=False,
        ) as response:
            await response.read()
            retry_after = None
            if response.status in (429, 503):
                retry_after = retry_after_seconds(
                    response.headers.get("Retry-After"), now or datetime.now(UTC)
                )
            return Attempt(status=response.status, retry_after_seconds=retry_after)
    except (TimeoutError, aiohttp.ClientError, OSError) as error:
        return Attempt(status=None, error=describe_error(error, timeout_seconds))

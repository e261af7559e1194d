"""The operator's errors, in words that are safe to publish.

* :class:`QueueAccessError`: why a pool's queue could not be read.
* :class:`ApplyError`: why a child object (Deployment, Service) could not be applied.

Messages end up in status conditions, Events and logs, which many people can
read: they never contain the DSN or its password, whatever the underlying
library put into its exception text.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from workerfleet.worker.connector import redact_dsn

REDACTED = "***"
MAX_DETAIL_CHARS = 300


class QueueAccessError(Exception):
    """The queue of a pool cannot be read; ``reason`` is a constant from ``reasons``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class ApplyError(Exception):
    """A child could not be applied; ``invalid`` when the API server refused it as written
    (the spec is at fault and retrying cannot help), else a transient failure."""

    def __init__(self, message: str, invalid: bool) -> None:
        super().__init__(message)
        self.message = message
        self.invalid = invalid


def secrets_in(dsn: str) -> list[str]:
    """The strings that must never appear in a message: the DSN, spelled several ways,
    and its password (also URL-decoded)."""
    found = [dsn, redact_dsn(dsn)]
    try:
        password = urlsplit(dsn).password
    except ValueError:
        password = None
    if password:
        found += [password, unquote(password)]
    for part in dsn.replace("&", " ").replace("?", " ").split():
        if part.lower().startswith("password="):
            found.append(part.split("=", 1)[1])
    return sorted({s for s in found if s}, key=len, reverse=True)


def scrub(text: str, dsn: str) -> str:
    for secret in secrets_in(dsn):
        text = text.replace(secret, REDACTED)
    if len(text) > MAX_DETAIL_CHARS:
        text = text[: MAX_DETAIL_CHARS - 3] + "..."
    return text


def describe(error: BaseException, dsn: str) -> str:
    """The most useful line about ``error``: its root cause, scrubbed."""
    root: BaseException = error
    while root.__cause__ is not None:
        root = root.__cause__
    detail = str(root).strip() or type(root).__name__
    return scrub(detail, dsn)

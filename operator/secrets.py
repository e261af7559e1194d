"""Reading a pool's DSN from its Secret, with errors that say what to fix.

The kubernetes client is synchronous; reads run in a thread. Successful reads
are cached briefly so a busy operator does not fetch the same Secret for every
pool every few seconds.

A Secret that cannot be read (missing, or the API refused) is asked for again
after 1, 2, 4, ... seconds, up to ``SECRET_BACKOFF_CAP_SECONDS``, and its last
error is the answer meanwhile. That backoff lives here, once per Secret, and
nowhere else: this reader is the one path to Secrets for pools and Monitors
alike, so a missing Secret costs one API read per step however many pools name
it; the inspector's per-database backoff cannot cover it, since without the
Secret there is no DSN to key it by. A Secret created meanwhile is noticed
within the cap.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kubernetes.client.exceptions import ApiException

from workerfleet.operator import reasons
from workerfleet.operator.errors import QueueAccessError
from workerfleet.worker import retry

SECRET_CACHE_SECONDS = 10.0
SECRET_BACKOFF_INITIAL_SECONDS = 1.0
SECRET_BACKOFF_CAP_SECONDS = 30.0
DSN_SCHEMES = ("postgres://", "postgresql://")

SecretFetcher = Callable[[str, str], dict[str, str] | None]
"""(namespace, name) -> the Secret's base64 data, or None when it does not exist."""


def _secret_backoff() -> retry.Backoff:
    return retry.Backoff(SECRET_BACKOFF_INITIAL_SECONDS, SECRET_BACKOFF_CAP_SECONDS)


@dataclass
class _Unreadable:
    """A Secret whose last read failed: the error, and when to ask again."""

    error: QueueAccessError
    retry_at: float = 0.0
    backoff: retry.Backoff = field(default_factory=_secret_backoff)


class SecretReader:
    def __init__(self, fetch: SecretFetcher, clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, dict[str, str]]] = {}
        self._unreadable: dict[tuple[str, str], _Unreadable] = {}

    async def dsn(self, namespace: str, name: str, key: str) -> str:
        data = await self._data(namespace, name)
        if key not in data:
            keys = ", ".join(sorted(data)) or "none"
            raise QueueAccessError(
                reasons.SECRET_KEY_MISSING,
                f"Secret {namespace}/{name} has no key {key!r} (its keys: {keys}); "
                "set spec.database.secretRef.key",
            )
        try:
            value = base64.b64decode(data[key], validate=True).decode().strip()
        except (binascii.Error, UnicodeDecodeError):
            value = ""
        if not value.startswith(DSN_SCHEMES):
            raise QueueAccessError(
                reasons.INVALID_DSN,
                f"key {key!r} of Secret {namespace}/{name} is not a PostgreSQL URL "
                "(postgresql://user:password@host:5432/db)",
            )
        return value

    async def data(self, namespace: str, name: str) -> dict[str, str]:
        """The Secret's base64 data (cached, backed off like every read here);
        raises QueueAccessError with one of the SECRET_* reasons."""
        return await self._data(namespace, name)

    async def _data(self, namespace: str, name: str) -> dict[str, str]:
        key = (namespace, name)
        cached = self._cache.get(key)
        if cached is not None and self._clock() - cached[0] < SECRET_CACHE_SECONDS:
            return cached[1]
        unreadable = self._unreadable.get(key)
        if unreadable is not None and self._clock() < unreadable.retry_at:
            raise unreadable.error
        try:
            data = await self._read(namespace, name)
        except QueueAccessError as error:
            self._cache.pop(key, None)
            unreadable = self._unreadable.setdefault(key, _Unreadable(error))
            unreadable.error = error
            unreadable.retry_at = self._clock() + unreadable.backoff.next_delay()
            raise
        self._unreadable.pop(key, None)
        self._cache[key] = (self._clock(), data)
        return data

    async def _read(self, namespace: str, name: str) -> dict[str, str]:
        try:
            data = await asyncio.to_thread(self._fetch, namespace, name)
        except ApiException as error:
            raise QueueAccessError(
                reasons.SECRET_UNREADABLE,
                f"Secret {namespace}/{name} cannot be read: HTTP {error.status} {error.reason}",
            ) from None
        except Exception as error:
            raise QueueAccessError(
                reasons.SECRET_UNREADABLE,
                f"Secret {namespace}/{name} cannot be read: {type(error).__name__}",
            ) from None
        if data is None:
            raise QueueAccessError(
                reasons.SECRET_NOT_FOUND,
                f"Secret {namespace}/{name} not found: create it with the queue's DSN "
                "under the key named by spec.database.secretRef.key",
            )
        return data

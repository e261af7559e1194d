"""Reading a pool's DSN from its Secret, with errors that say what to fix.

The kubernetes client is synchronous; reads run in a thread. Successful reads
are cached briefly so a busy operator does not fetch the same Secret for every
pool every few seconds; failures are not cached.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Callable

from kubernetes.client.exceptions import ApiException

from workerfleet.operator import reasons
from workerfleet.operator.errors import QueueAccessError

SECRET_CACHE_SECONDS = 10.0
DSN_SCHEMES = ("postgres://", "postgresql://")

SecretFetcher = Callable[[str, str], dict[str, str] | None]
"""(namespace, name) -> the Secret's base64 data, or None when it does not exist."""


class SecretReader:
    def __init__(self, fetch: SecretFetcher, clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, dict[str, str]]] = {}

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

    async def _data(self, namespace: str, name: str) -> dict[str, str]:
        cached = self._cache.get((namespace, name))
        if cached is not None and self._clock() - cached[0] < SECRET_CACHE_SECONDS:
            return cached[1]
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
            self._cache.pop((namespace, name), None)
            raise QueueAccessError(
                reasons.SECRET_NOT_FOUND,
                f"Secret {namespace}/{name} not found: create it with the queue's DSN "
                "under the key named by spec.database.secretRef.key",
            )
        self._cache[(namespace, name)] = (self._clock(), data)
        return data

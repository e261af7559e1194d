from __future__ import annotations

import base64

import pytest

from workerfleet.operator import reasons
from workerfleet.operator.errors import QueueAccessError
from workerfleet.operator.secrets import SECRET_CACHE_SECONDS, SecretReader

DSN = "postgresql://app:pw@127.0.0.1:5432/q"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class Store:
    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, str]] = {}
        self.reads = 0

    def fetch(self, namespace: str, name: str) -> dict[str, str] | None:
        self.reads += 1
        return self.secrets.get((namespace, name))


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_reads_and_caches_the_dsn() -> None:
    store, clock = Store(), Clock()
    store.secrets[("ns", "db")] = {"dsn": b64(DSN + "\n")}
    reader = SecretReader(store.fetch, clock)
    assert await reader.dsn("ns", "db", "dsn") == DSN
    assert await reader.dsn("ns", "db", "dsn") == DSN
    assert store.reads == 1
    clock.now += SECRET_CACHE_SECONDS + 1
    await reader.dsn("ns", "db", "dsn")
    assert store.reads == 2


async def test_missing_secret_then_created() -> None:
    store = Store()
    reader = SecretReader(store.fetch, Clock())
    with pytest.raises(QueueAccessError) as caught:
        await reader.dsn("ns", "db", "dsn")
    assert caught.value.reason == reasons.SECRET_NOT_FOUND
    assert "Secret ns/db not found" in caught.value.message
    store.secrets[("ns", "db")] = {"dsn": b64(DSN)}
    assert await reader.dsn("ns", "db", "dsn") == DSN


async def test_missing_key_lists_the_keys_but_no_values() -> None:
    store = Store()
    store.secrets[("ns", "db")] = {"url": b64(DSN)}
    with pytest.raises(QueueAccessError) as caught:
        await SecretReader(store.fetch, Clock()).dsn("ns", "db", "dsn")
    assert caught.value.reason == reasons.SECRET_KEY_MISSING
    assert "'dsn'" in caught.value.message
    assert "url" in caught.value.message
    assert "pw" not in caught.value.message


async def test_a_value_that_is_not_a_url_is_not_echoed() -> None:
    store = Store()
    store.secrets[("ns", "db")] = {"dsn": b64("hunter2")}
    with pytest.raises(QueueAccessError) as caught:
        await SecretReader(store.fetch, Clock()).dsn("ns", "db", "dsn")
    assert caught.value.reason == reasons.INVALID_DSN
    assert "hunter2" not in caught.value.message


async def test_fetch_failures_become_unreadable() -> None:
    def broken(namespace: str, name: str) -> dict[str, str] | None:
        raise ConnectionResetError("apiserver went away")

    with pytest.raises(QueueAccessError) as caught:
        await SecretReader(broken, Clock()).dsn("ns", "db", "dsn")
    assert caught.value.reason == reasons.SECRET_UNREADABLE

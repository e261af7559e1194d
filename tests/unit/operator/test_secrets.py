from __future__ import annotations

import base64

import pytest

from workerfleet.operator import reasons
from workerfleet.operator.errors import QueueAccessError
from workerfleet.operator.secrets import (
    SECRET_BACKOFF_CAP_SECONDS,
    SECRET_BACKOFF_INITIAL_SECONDS,
    SECRET_CACHE_SECONDS,
    SecretReader,
)

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
    store, clock = Store(), Clock()
    reader = SecretReader(store.fetch, clock)
    with pytest.raises(QueueAccessError) as caught:
        await reader.dsn("ns", "db", "dsn")
    assert caught.value.reason == reasons.SECRET_NOT_FOUND
    assert "Secret ns/db not found" in caught.value.message
    store.secrets[("ns", "db")] = {"dsn": b64(DSN)}
    clock.now += SECRET_BACKOFF_INITIAL_SECONDS
    assert await reader.dsn("ns", "db", "dsn") == DSN


async def test_a_missing_secret_is_read_once_per_backoff_step_whoever_asks() -> None:
    store, clock = Store(), Clock()
    reader = SecretReader(store.fetch, clock)
    reads_per_step = []
    for step in range(7):
        before = store.reads
        for _ in range(3):  # three pools name the same Secret
            with pytest.raises(QueueAccessError) as caught:
                await reader.dsn("ns", "db", "dsn")
            assert caught.value.reason == reasons.SECRET_NOT_FOUND
        reads_per_step.append(store.reads - before)
        clock.now += min(2.0**step, SECRET_BACKOFF_CAP_SECONDS) - 0.5  # just short of it
        with pytest.raises(QueueAccessError):
            await reader.dsn("ns", "db", "dsn")
        clock.now += 0.5
    assert reads_per_step == [1] * 7
    assert store.reads == 7  # 1, 2, 4, 8, 16, 30, 30 seconds apart; never in between
    with pytest.raises(QueueAccessError):
        await reader.dsn("ns", "other", "dsn")  # another Secret has a backoff of its own
    assert store.reads == 8


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

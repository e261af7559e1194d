"""One LISTEN connection per database, shared by its pools; events reach the right ones.

The connection is a stand-in with asyncpg's listener methods: no I/O here (the real one
is exercised by the operator's integration tests).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from localcluster.waiting import wait_for_async
from workerfleet.operator.queue_events import QueueEvent, QueueEvents


class FakeConnection:
    def __init__(self) -> None:
        self.listeners: dict[str, Callable[..., None]] = {}
        self.on_close: list[Callable[[Any], None]] = []
        self.closed = False

    def add_termination_listener(self, callback: Callable[[Any], None]) -> None:
        self.on_close.append(callback)

    async def add_listener(self, channel: str, callback: Callable[..., None]) -> None:
        self.listeners[channel] = callback

    async def execute(self, query: str) -> str:
        return "SELECT 1"

    async def close(self) -> None:
        self.closed = True

    def notify(self, payload: str) -> None:
        self.listeners["workerfleet_jobs"](self, 1, "workerfleet_jobs", payload)

    def lose(self) -> None:
        for callback in self.on_close:
            callback(self)


class FakeDatabases:
    def __init__(self) -> None:
        self.connections: dict[str, list[FakeConnection]] = {}
        self.refuse = False

    async def connect(self, dsn: str) -> Any:
        if self.refuse:
            raise ConnectionRefusedError("no")
        connection = FakeConnection()
        self.connections.setdefault(dsn, []).append(connection)
        return connection


async def until(check: Callable[[], bool]) -> None:
    await wait_for_async("the listener", lambda: check() or None, timeout=5, interval=0.001)


def recorder() -> tuple[list[QueueEvent], Callable[[QueueEvent], None]]:
    heard: list[QueueEvent] = []
    return heard, heard.append


async def test_pools_on_one_database_share_one_connection_and_hear_their_queue() -> None:
    databases = FakeDatabases()
    events = QueueEvents(connect=databases.connect, clock=lambda: 42.0)
    emails, on_emails = recorder()
    reports, on_reports = recorder()
    events.subscribe(("ns", "emails"), "db-1", "emails", on_emails)
    events.subscribe(("ns", "reports"), "db-1", "reports", on_reports)
    await until(lambda: events.connected("db-1"))
    assert len(databases.connections["db-1"]) == 1
    connection = databases.connections["db-1"][0]
    connection.notify("emails")
    connection.notify("")  # no queue named: everyone
    assert [(e.kind, e.queue) for e in emails] == [
        ("connected", None),
        ("notify", "emails"),
        ("notify", None),
    ]
    assert [(e.kind, e.queue) for e in reports] == [("connected", None), ("notify", None)]
    assert emails[1].received_at == 42.0
    await events.close()


async def test_a_lost_connection_is_told_and_comes_back() -> None:
    databases = FakeDatabases()
    events = QueueEvents(connect=databases.connect, backoff_initial_seconds=0.001)
    heard, on_event = recorder()
    events.subscribe("pool", "db", "q", on_event)
    await until(lambda: events.connected("db"))
    databases.refuse = True
    databases.connections["db"][0].lose()
    await until(lambda: not events.connected("db"))
    databases.refuse = False
    await until(lambda: events.connected("db"))
    assert [e.kind for e in heard] == ["connected", "lost", "connected"]
    assert databases.connections["db"][0].closed
    await events.close()


async def test_the_last_subscriber_leaving_closes_the_connection() -> None:
    databases = FakeDatabases()
    events = QueueEvents(connect=databases.connect)
    events.subscribe("a", "db", "q", lambda event: None)
    events.subscribe("b", "db", "q", lambda event: None)
    await until(lambda: events.connected("db"))
    events.unsubscribe("a")
    assert events.databases == 1
    events.unsubscribe("b")
    assert events.databases == 0
    await until(lambda: databases.connections["db"][0].closed)


async def test_a_new_database_for_a_pool_moves_its_subscription() -> None:
    databases = FakeDatabases()
    events = QueueEvents(connect=databases.connect)
    _, on_event = recorder()
    events.subscribe("pool", "old-db", "q", on_event)
    await until(lambda: events.connected("old-db"))
    events.subscribe("pool", "new-db", "q", on_event)  # its Secret now names another DSN
    await until(lambda: events.connected("new-db"))
    assert events.databases == 1
    await until(lambda: databases.connections["old-db"][0].closed)
    await events.close()

from __future__ import annotations

import pytest

from workerfleet.operator import reasons
from workerfleet.operator.errors import QueueAccessError
from workerfleet.operator.inspector import QueueInspector, backoff_seconds
from workerfleet.worker.connector import Connector, DatabaseUnavailable

DSN = "postgresql://app:topsecret@127.0.0.1:1/q"


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def test_backoff_doubles_and_caps() -> None:
    assert [backoff_seconds(n) for n in range(5)] == [0.0, 1.0, 2.0, 4.0, 8.0]
    assert backoff_seconds(30) == 60.0


async def test_unreachable_database_is_retried_with_backoff_and_scrubbed() -> None:
    clock = Clock()
    attempts: list[str] = []

    async def opener(dsn: str) -> Connector:
        attempts.append(dsn)
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL at {dsn}: refused") from OSError(
            f"Connect call failed for {dsn}"
        )

    inspector = QueueInspector(dead_after_seconds=60, opener=opener, clock=clock)
    with pytest.raises(QueueAccessError) as first:
        await inspector.snapshot(DSN)
    assert first.value.reason == reasons.DATABASE_UNREACHABLE
    assert "topsecret" not in first.value.message
    assert DSN not in first.value.message
    with pytest.raises(QueueAccessError):
        await inspector.snapshot(DSN)
    assert len(attempts) == 1  # within the backoff: the last error, no new attempt
    clock.now += 1.5
    with pytest.raises(QueueAccessError):
        await inspector.snapshot(DSN)
    assert len(attempts) == 2
    clock.now += 1.5  # the second failure backs off for 2 s
    with pytest.raises(QueueAccessError):
        await inspector.snapshot(DSN)
    assert len(attempts) == 2
    await inspector.close()

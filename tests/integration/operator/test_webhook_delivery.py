"""Webhook delivery against a real HTTP receiver on loopback: retries, Retry-After, a
receiver that hangs past the timeout, one that is down throughout, and recovery passes
on a real PostgreSQL that go on meanwhile. Delays are read from what the outbox asked
to sleep, never asserted from the clock; measured figures are printed."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import pytest

from localcluster.loopback import LOOPBACK, free_port
from localcluster.waiting import wait_for_async
from tests.webhook_receiver import SECRET_PATH, Reply, WebhookReceiver
from workerfleet.operator.notifications import payloads
from workerfleet.operator.notifications.notifier import Notifier
from workerfleet.operator.notifications.outbox import Outbox, RetryPolicy, Target
from workerfleet.operator.notifications.payloads import Format, Notification
from workerfleet.worker.connector import Connector
from workerfleet.worker.migrations import migrate
from workerfleet.worker.models import EnqueueRequest
from workerfleet.worker.repository import Repository

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
FAST = RetryPolicy(base_seconds=0.05, cap_seconds=0.2, max_attempts=4)
TOKEN = SECRET_PATH.rsplit("/", 1)[-1]


def notification(pool: str = "emails") -> Notification:
    return Notification(
        namespace="mail",
        monitor="mail-alerts",
        rule="noWorkersWithPending",
        pool=pool,
        state="firing",
        since=T0,
        fired_at=T0,
        message="12 jobs ready to run, 0 workers online",
    )


class RecordedSleep:
    """The outbox's sleep: records each requested delay, then sleeps for real."""

    def __init__(self) -> None:
        self.requested: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.requested.append(seconds)
        await asyncio.sleep(seconds)


@pytest.fixture
async def notifier() -> AsyncIterator[Notifier]:
    made = Notifier(FAST)
    try:
        yield made
    finally:
        await made.close()


def outbox_for(
    notifier: Notifier,
    url: str,
    fmt: Format = "generic",
    timeout: float = 5.0,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    policy: RetryPolicy = FAST,
) -> Outbox:
    outbox = Outbox(notifier.send, policy=policy, sleep=sleep or asyncio.sleep)
    outbox.configure(Target(url=url, format=fmt, timeout_seconds=timeout))
    return outbox


async def settled(outbox: Outbox, delivered: int = 0, failed: int = 0) -> tuple[int, int]:
    """Wait until the outbox has delivered and given up on that many; returns the counts."""
    seen = [0, 0]

    def counts() -> bool:
        record = outbox.take_record()
        seen[0] += record.delivered
        seen[1] += record.failed
        return seen[0] >= delivered and seen[1] >= failed and outbox.pending == 0

    await wait_for_async("the outbox to settle", counts, timeout=30, interval=0.05)
    return seen[0], seen[1]


async def test_500_twice_then_200_is_delivered_exactly_once(notifier: Notifier) -> None:
    with WebhookReceiver([Reply(500), Reply(500)]) as receiver:
        outbox = outbox_for(notifier, receiver.url)
        outbox.put(notification())
        assert await settled(outbox, delivered=1) == (1, 0)
        requests = receiver.requests()
        await outbox.close()
    assert len(requests) == 3
    assert all(r.path == SECRET_PATH for r in requests)
    assert all(r.content_type == "application/json" for r in requests)
    assert requests[0].body == requests[2].body == payloads.generic(notification())
    print(f"\n500, 500, 200: delivered after {requests[2].at - requests[0].at:.3f}s")


async def test_429_retry_after_is_honoured(notifier: Notifier) -> None:
    sleep = RecordedSleep()
    with WebhookReceiver([Reply(429, {"Retry-After": "1"})]) as receiver:
        outbox = outbox_for(notifier, receiver.url, sleep=sleep)
        outbox.put(notification())
        assert await settled(outbox, delivered=1) == (1, 0)
        first, second = receiver.requests()
        await outbox.close()
    assert sleep.requested == [1.0]  # the receiver's delay, not the backoff's 0.05s
    print(f"\n429 Retry-After: 1 -> next attempt after {second.at - first.at:.3f}s")


async def test_a_receiver_hanging_past_the_timeout_is_retried(
    notifier: Notifier, caplog: pytest.LogCaptureFixture
) -> None:
    with WebhookReceiver([Reply(hang=True)]) as receiver:
        outbox = outbox_for(notifier, receiver.url, fmt="slack", timeout=0.5)
        outbox.put(notification())
        assert await settled(outbox, delivered=1) == (1, 0)
        record = outbox.take_record()
        requests = receiver.requests()
        await outbox.close()
    assert len(requests) == 2
    assert record.last_failure == "timed out after 0.5s (attempt 1, retrying)"
    assert requests[1].body == payloads.slack(notification())
    assert TOKEN not in caplog.text


async def test_a_receiver_down_throughout_is_given_up_on_and_the_url_never_shows(
    notifier: Notifier, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    down = f"http://{LOOPBACK}:{free_port()}{SECRET_PATH}"  # nothing listens there
    outbox = outbox_for(notifier, down, fmt="discord")
    outbox.put(notification("a"))
    outbox.put(notification("b"))
    assert await settled(outbox, failed=2) == (0, 2)
    failure = outbox.record.last_failure
    await outbox.close()
    assert failure is not None
    assert failure.startswith("cannot connect to the webhook's host")
    assert failure.endswith(f"(gave up after {FAST.max_attempts} attempts)")
    for text in (failure, caplog.text):
        assert TOKEN not in text
        assert str(down) not in text
    assert "not delivered" in caplog.text


@pytest.mark.parametrize("receiver_state", ["hanging", "down"])
async def test_recovery_passes_keep_their_schedule_while_the_webhook_fails(
    notifier: Notifier, postgres_dsn: str, receiver_state: str
) -> None:
    """The outbox sends in its own task: a Monitor's recovery does not wait for it."""
    await migrate(postgres_dsn)
    slow = RetryPolicy(base_seconds=1.0, cap_seconds=5.0, max_attempts=100)
    async with await Connector.open(postgres_dsn, min_size=1, max_size=4) as connector:
        repository = Repository(connector)
        await repository.enqueue_many([EnqueueRequest("q", "t") for _ in range(5)])
        await repository.claim("w", ["q"], 5, lease_seconds=0.05)
        with WebhookReceiver([Reply(hang=True)]) as receiver:
            url = receiver.url
            if receiver_state == "down":
                url = f"http://{LOOPBACK}:{free_port()}{SECRET_PATH}"  # nothing listens
            outbox = outbox_for(notifier, url, timeout=30.0, policy=slow)
            passes: list[float] = []
            rescued = 0
            for index in range(5):
                started = time.monotonic()
                outbox.put(notification(f"p{index}"))  # what a Monitor run does: never waits
                result = await repository.recover(60, queues=["q"])
                rescued += result.rescued.rescued
                passes.append(time.monotonic() - started)
                await asyncio.sleep(0.1)
            # Nothing got through, all five wait, and every pass ran meanwhile.
            assert outbox.pending == 5
            assert outbox.record.delivered == 0
            if receiver_state == "hanging":
                assert len(receiver.requests()) == 1  # the first POST is still hanging
            else:
                assert outbox.record.last_failure is not None
                assert outbox.record.last_failure.startswith("cannot connect")
            await outbox.close()
    assert rescued == 5
    print(
        f"\nrecovery passes while the webhook is {receiver_state} (s): "
        + ", ".join(f"{p:.3f}" for p in passes)
    )

"""A Monitor's outbox: notifications waiting for the webhook, and the task that sends them.

A Monitor's run calls :meth:`Outbox.put` and returns: delivery happens in
the outbox's own task, one notification at a time in order, so a slow, failing
or hanging receiver never delays recovery. A failed attempt is retried after
an exponential delay with jitter (``workerfleet.worker.retry``), or after the
receiver's ``Retry-After`` on 429/503, up to ``RetryPolicy.max_attempts``;
a 4xx other than 408/425/429 is not retried (the receiver refuses the body or
the hook is gone). The queue is bounded: when full, the oldest waiting
notification is dropped. What was delivered, given up or dropped is counted
for the Monitor's status.

The outbox lives in memory: notifications still waiting when the operator
stops are lost (the incidents themselves are in the Monitor's status and are
neither forgotten nor notified again).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from workerfleet.operator import metrics
from workerfleet.operator.notifications.payloads import Format, Notification
from workerfleet.operator.notifications.webhook import Attempt
from workerfleet.worker import retry

OUTBOX_CAPACITY = 100

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """Where and how to send: read from the Monitor's spec and Secret at each run."""

    url: str
    format: Format
    timeout_seconds: float

    def __repr__(self) -> str:  # the URL is a credential: never in a log line or traceback
        return f"Target(format={self.format!r}, timeout_seconds={self.timeout_seconds})"


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float = 1.0
    cap_seconds: float = 60.0
    max_attempts: int = 8
    """Attempts per notification, the first included (about 4 minutes with the defaults)."""
    retry_after_cap_seconds: float = 300.0
    """Longest Retry-After honoured; a receiver asking for more is asked again after this."""
    jitter: retry.Jitter = "equal"

    def delay(self, attempt: int, outcome: Attempt, rng: Callable[[], float]) -> float:
        """How long to wait after the ``attempt``-th failed attempt."""
        if outcome.retry_after_seconds is not None:
            return min(outcome.retry_after_seconds, self.retry_after_cap_seconds)
        return retry.backoff_seconds(attempt, self.base_seconds, self.cap_seconds, self.jitter, rng)


Sender = Callable[[Target, Notification], Awaitable[Attempt]]


@dataclass
class DeliveryRecord:
    """What the Monitor's status says about delivery (counts since the last take)."""

    delivered: int = 0
    failed: int = 0
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None
    last_failure: str | None = None


@dataclass
class _Item:
    notification: Notification
    queued_at: float
    attempts: int = 0


class Outbox:
    def __init__(
        self,
        send: Sender,
        *,
        policy: RetryPolicy | None = None,
        capacity: int = OUTBOX_CAPACITY,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.send = send
        self.policy = policy or RetryPolicy()
        self.capacity = capacity
        self.sleep = sleep
        self.rng = rng
        self.clock = clock
        self.record = DeliveryRecord()
        self._items: collections.deque[_Item] = collections.deque()
        self._target: Target | None = None
        self._in_flight: _Item | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return len(self._items)

    @property
    def target(self) -> Target | None:
        return self._target

    def configure(self, target: Target | None) -> None:
        """Where to send from now on (None: hold everything until a target is known)."""
        self._target = target
        self._wake.set()

    def put(self, notification: Notification) -> None:
        """Queue ``notification``; never waits. When full, the oldest waiting one goes."""
        if len(self._items) >= self.capacity:
            victim = 1 if self._in_flight is self._items[0] and len(self._items) > 1 else 0
            dropped = self._items[victim]
            del self._items[victim]
            self._fail(dropped, "outbox full: the oldest waiting notification was dropped")
            metrics.NOTIFICATIONS.labels(format=self._format, result="dropped").inc()
        self._items.append(_Item(notification, time.monotonic()))
        self._wake.set()
        self.start()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._deliver_forever(), name="workerfleet-webhook-outbox"
            )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def take_record(self) -> DeliveryRecord:
        """The counts since the last take (the times stay), for the Monitor's status."""
        taken = self.record
        self.record = DeliveryRecord(
            last_success_at=taken.last_success_at,
            last_failure_at=taken.last_failure_at,
            last_failure=taken.last_failure,
        )
        return taken

    @property
    def _format(self) -> str:
        return self._target.format if self._target is not None else "unknown"

    async def _deliver_forever(self) -> None:
        while True:
            while not (self._items and self._target is not None):
                self._wake.clear()
                await self._wake.wait()
            await self._deliver_head()

    async def _deliver_head(self) -> None:
        item, target = self._items[0], self._target
        assert target is not None
        self._in_flight = item
        try:
            outcome = await self.send(target, item.notification)
        finally:
            self._in_flight = None
        item.attempts += 1
        metrics.NOTIFICATION_ATTEMPTS.labels(
            format=target.format, status_class=outcome.status_class
        ).inc()
        if outcome.delivered:
            self._remove(item)
            self.record.delivered += 1
            self.record.last_success_at = self.clock()
            metrics.NOTIFICATIONS.labels(format=target.format, result="delivered").inc()
            metrics.NOTIFICATION_DELIVERY_SECONDS.labels(format=target.format).observe(
                time.monotonic() - item.queued_at
            )
            return
        if not outcome.retryable or item.attempts >= self.policy.max_attempts:
            self._remove(item)
            if outcome.retryable:
                why = f"{outcome.describe()} (gave up after {item.attempts} attempts)"
            else:
                why = f"{outcome.describe()} (not retried)"
            self._fail(item, why)
            metrics.NOTIFICATIONS.labels(format=target.format, result="failed").inc()
            return
        self._note_failure(f"{outcome.describe()} (attempt {item.attempts}, retrying)")
        await self.sleep(self.policy.delay(item.attempts, outcome, self.rng))

    def _remove(self, item: _Item) -> None:
        # The item may have been dropped from a full outbox while it was being sent.
        if self._items and self._items[0] is item:
            self._items.popleft()

    def _fail(self, item: _Item, why: str) -> None:
        self.record.failed += 1
        self._note_failure(why)
        logger.warning(
            "notification about %s on %s/%s not delivered: %s",
            item.notification.rule,
            item.notification.namespace,
            item.notification.pool,
            why,
        )

    def _note_failure(self, why: str) -> None:
        self.record.last_failure_at = self.clock()
        self.record.last_failure = why

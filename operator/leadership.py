"""Two operator replicas, one acting: leader election on a Lease (effects).

``Leadership.acquire`` waits as a standby until this process holds the Lease;
``Leadership.hold`` renews it for as long as the process acts and calls ``on_lost``
when it can no longer be sure it holds it (the caller stops acting at once);
``Leadership.release`` gives it up on a clean shutdown so a standby takes over at
its next attempt. The decisions are in ``lease.py``; this module only reads and
writes the Lease, with the kubernetes client in threads and a time limit on every
call, so a hung request cannot outlast the renew deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from workerfleet.operator import lease, metrics
from workerfleet.operator.lease import LeaseRecord, Timing

logger = logging.getLogger(__name__)

SERVICE_ACCOUNT_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class Conflict(Exception):
    """Someone else wrote the Lease since it was read (HTTP 409)."""


class LeaseStore(Protocol):
    async def read(self) -> LeaseRecord: ...

    async def write(self, record: LeaseRecord, spec: dict[str, Any]) -> LeaseRecord: ...


class ApiLeaseStore:
    """One Lease in the API: read, and written with the resourceVersion that was read."""

    def __init__(
        self, api: client.ApiClient, namespace: str, name: str, timeout_seconds: float
    ) -> None:
        self.coordination = client.CoordinationV1Api(api)
        self.namespace = namespace
        self.name = name
        self.timeout = timeout_seconds

    async def read(self) -> LeaseRecord:
        return await self._call(self._read)

    async def write(self, record: LeaseRecord, spec: dict[str, Any]) -> LeaseRecord:
        return await self._call(lambda: self._write(record, spec))

    async def _call(self, function: Callable[[], LeaseRecord]) -> LeaseRecord:
        # The thread may outlive the wait; its answer is then ignored.
        return await asyncio.wait_for(asyncio.to_thread(function), self.timeout)

    def _read(self) -> LeaseRecord:
        try:
            response: Any = self.coordination.read_namespaced_lease(
                self.name, self.namespace, _preload_content=False, _request_timeout=self.timeout
            )
        except ApiException as error:
            if error.status == 404:
                return LeaseRecord.absent()
            raise
        return LeaseRecord.from_body(json.loads(response.data))

    def _write(self, record: LeaseRecord, spec: dict[str, Any]) -> LeaseRecord:
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": spec,
        }
        # The client sends a dict body as it is; its stubs only name the model class.
        try:
            if record.resource_version is None:
                response: Any = self.coordination.create_namespaced_lease(
                    self.namespace,
                    body,  # type: ignore[arg-type]
                    _preload_content=False,
                    _request_timeout=self.timeout,
                )
            else:
                body["metadata"]["resourceVersion"] = record.resource_version
                response = self.coordination.replace_namespaced_lease(
                    self.name,
                    self.namespace,
                    body,  # type: ignore[arg-type]
                    _preload_content=False,
                    _request_timeout=self.timeout,
                )
        except ApiException as error:
            # A stale resourceVersion, or a Lease created meanwhile (AlreadyExists).
            if error.status == 409:
                raise Conflict(str(error.reason)) from None
            raise
        return LeaseRecord.from_body(json.loads(response.data))


class Leadership:
    def __init__(
        self,
        store: LeaseStore,
        identity: str,
        timing: Timing,
        *,
        on_holder: Callable[[str | None], None] = lambda _: None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.identity = identity
        self.timing = timing
        self.leading = False
        self._on_holder = on_holder
        self._clock = clock
        self._wall_clock = wall_clock
        self._observed: lease.Observed | None = None
        self._renewed_at = 0.0

    @property
    def holder(self) -> str | None:
        """The holder as last read, this process included."""
        return self._observed.record.holder if self._observed else None

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Waits until this process holds the Lease (True) or ``stop`` is set (False)."""
        logger.info("standing by for the leader lease", extra={"identity": self.identity})
        while not stop.is_set():
            if await self._attempt():
                logger.info("leader lease acquired: acting", extra={"identity": self.identity})
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.timing.retry_period)
        return False

    async def hold(self, on_lost: Callable[[str], None]) -> None:
        """Renews the Lease every retry period until cancelled; ``on_lost`` (once) when
        another process holds it or renewals failed for the renew deadline."""
        while True:
            await asyncio.sleep(self.timing.retry_period)
            if await self._attempt():
                continue
            now = self._clock()
            holder = self.holder
            if holder is not None and holder != self.identity:
                reason = f"the lease is held by {holder}"
            elif lease.lost(self._renewed_at, now, self.timing):
                reason = f"the lease was not renewed for {now - self._renewed_at:.1f}s"
            else:
                continue
            self._set_leading(False)
            on_lost(reason)
            return

    async def release(self) -> None:
        """Gives the Lease up if this process holds it; best effort (it expires anyway)."""
        if not self.leading or self._observed is None:
            return
        self._set_leading(False)
        try:
            await self.store.write(
                self._observed.record, lease.release(self._observed.record, self._wall_clock())
            )
            logger.info("leader lease released", extra={"identity": self.identity})
        except Exception as error:
            logger.warning("leader lease not released (it expires by itself): %s", error)

    async def _attempt(self) -> bool:
        """One try to take or renew the Lease; True when this process holds it now."""
        now = self._clock()
        try:
            if not self.leading or self._observed is None:
                self._observe(await self.store.read(), now)
            assert self._observed is not None
            if not lease.may_take(self._observed, self.identity, now):
                return False
            spec = lease.claim(
                self._observed.record,
                self.identity,
                self.timing.lease_duration,
                self._wall_clock(),
            )
            written = await self.store.write(self._observed.record, spec)
        except Conflict:
            self._observed = None  # read it again next time
            return False
        except Exception as error:
            logger.warning("leader lease unreachable: %s", error or type(error).__name__)
            return False
        self._observe(written, now)
        self._renewed_at = now
        self._set_leading(True)
        return True

    def _observe(self, record: LeaseRecord, now: float) -> None:
        before = self.holder
        self._observed = lease.observe(self._observed, record, now)
        if record.holder != before:
            self._on_holder(record.holder)

    def _set_leading(self, leading: bool) -> None:
        self.leading = leading
        metrics.LEADER.set(1 if leading else 0)


def own_namespace(path: str = SERVICE_ACCOUNT_NAMESPACE_FILE) -> str | None:
    """The namespace of the pod this process runs in, from its service-account mount."""
    try:
        with open(path) as file:
            return file.read().strip() or None
    except OSError:
        return None

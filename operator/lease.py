"""Leader election on a coordination.k8s.io Lease: the decisions, without I/O.

The rules are client-go's (``k8s.io/client-go/tools/leaderelection``):

* a candidate takes the Lease when nobody holds it, when it holds it already, or when
  the holder has not renewed it for ``leaseDurationSeconds``, measured on the
  candidate's own clock from the moment it *saw* the record change (never from the
  timestamps in the record, so clocks that disagree cannot hand the Lease out early);
* every write carries the ``resourceVersion`` it read: of two candidates writing at
  once, the API server accepts one and refuses the other (409);
* the holder renews every ``retry_period``; when it could not renew for
  ``renew_deadline`` (shorter than the lease duration) it stops acting at once, so it
  is gone before anyone else may take over;
* on a clean shutdown the holder gives the Lease up, and a standby takes it at its
  next attempt instead of waiting for the lease to expire.

``leadership.py`` runs these decisions against the API server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# A released Lease: held by nobody, and expiring at once for anyone still reading it.
RELEASED_DURATION_SECONDS = 1


@dataclass(frozen=True)
class Timing:
    lease_duration: float
    """How long a holder that stopped renewing keeps the Lease, as others see it."""
    renew_deadline: float
    """How long the holder keeps acting while its renewals fail."""
    retry_period: float
    """How often the holder renews, and a standby tries to take over."""

    def problem(self) -> str | None:
        """Why these timings cannot keep two operators from acting at once, if they cannot."""
        if not self.lease_duration > self.renew_deadline > self.retry_period > 0:
            return (
                "leader election needs leaseDuration > renewDeadline > retryPeriod > 0, got "
                f"{self.lease_duration:g}s, {self.renew_deadline:g}s, {self.retry_period:g}s"
            )
        return None

    @property
    def worst_takeover_seconds(self) -> float:
        """The longest a standby waits after the holder died: the lease duration, one
        period before it saw the last renewal, one more before it tries again."""
        return self.lease_duration + 2 * self.retry_period


@dataclass(frozen=True)
class LeaseRecord:
    """What a Lease says; ``resource_version`` None means the Lease does not exist."""

    holder: str | None
    duration_seconds: int | None
    acquire_time: str | None
    renew_time: str | None
    transitions: int
    resource_version: str | None

    @classmethod
    def absent(cls) -> LeaseRecord:
        return cls(None, None, None, None, 0, None)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> LeaseRecord:
        spec = body.get("spec") or {}
        return cls(
            holder=spec.get("holderIdentity") or None,
            duration_seconds=spec.get("leaseDurationSeconds"),
            acquire_time=spec.get("acquireTime"),
            renew_time=spec.get("renewTime"),
            transitions=int(spec.get("leaseTransitions") or 0),
            resource_version=(body.get("metadata") or {}).get("resourceVersion"),
        )


@dataclass(frozen=True)
class Observed:
    """A record and when this candidate first saw it (its own monotonic clock)."""

    record: LeaseRecord
    since: float


def observe(previous: Observed | None, record: LeaseRecord, now: float) -> Observed:
    """The observation after reading ``record`` at ``now``: the clock restarts only when
    the record changed (a renewal changes its resourceVersion)."""
    if previous is not None and previous.record.resource_version == record.resource_version:
        return Observed(record, previous.since)
    return Observed(record, now)


def may_take(observed: Observed, identity: str, now: float) -> bool:
    """Whether ``identity`` may write itself into the Lease now."""
    record = observed.record
    if record.resource_version is None or not record.holder or record.holder == identity:
        return True
    return now - observed.since >= (record.duration_seconds or 0)


def micro_time(moment: datetime) -> str:
    """A MicroTime as the API server writes it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def claim(record: LeaseRecord, identity: str, duration: float, now: datetime) -> dict[str, Any]:
    """The Lease spec that takes (or renews) the Lease for ``identity``."""
    taking = record.holder != identity
    stamp = micro_time(now)
    return {
        "holderIdentity": identity,
        "leaseDurationSeconds": max(int(duration), 1),
        "acquireTime": stamp if taking or record.acquire_time is None else record.acquire_time,
        "renewTime": stamp,
        "leaseTransitions": record.transitions + (1 if taking and record.holder else 0),
    }


def release(record: LeaseRecord, now: datetime) -> dict[str, Any]:
    """The Lease spec that gives the Lease up (client-go's ReleaseOnCancel)."""
    stamp = micro_time(now)
    return {
        "holderIdentity": None,
        "leaseDurationSeconds": RELEASED_DURATION_SECONDS,
        "acquireTime": stamp,
        "renewTime": stamp,
        "leaseTransitions": record.transitions,
    }


def lost(last_renewed: float, now: float, timing: Timing) -> bool:
    """The holder's renewals have failed for longer than it may keep acting."""
    return now - last_renewed >= timing.renew_deadline

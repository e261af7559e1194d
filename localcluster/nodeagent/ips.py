"""Loopback pod addresses: each live pod gets its own 127.0.0.N, so every pod can bind
the same port (8080) and probes reach the right process. On Linux the whole of
127.0.0.0/8 already routes to `lo`, so nothing needs configuring.

Several local clusters may run on one machine (a developer's demo cluster and a test's
private one), and their pods share the loopback addresses: the allocator therefore asks
an `AddressClaims` before it hands an address out. The allocator itself is pure
bookkeeping; `address_claims` holds the machine-wide claims.
"""

from __future__ import annotations

import ipaddress
from typing import Protocol

HOST_IP = "127.0.0.1"
FIRST_POD_HOST = 2
# 127.0.0.2 .. 127.0.255.254: plenty for one test node, and no 127.0.0.1 clash.
POD_ADDRESS_COUNT = 65_000


class AddressPoolExhausted(RuntimeError):
    pass


def address_of(index: int) -> str:
    """The index-th pod address, counting 0 as 127.0.0.2."""
    return str(ipaddress.IPv4Address("127.0.0.0") + FIRST_POD_HOST + index)


def index_of(address: str) -> int | None:
    """The pool index of an address, or None if it is not a pod address."""
    try:
        offset = int(ipaddress.IPv4Address(address)) - int(ipaddress.IPv4Address("127.0.0.0"))
    except ValueError:
        return None
    index = offset - FIRST_POD_HOST
    return index if 0 <= index < POD_ADDRESS_COUNT else None


class AddressClaims(Protocol):
    """Who else on this machine uses an address."""

    def claim(self, address: str, uid: str) -> bool:
        """Takes the address for pod uid; False when someone else holds it."""
        ...

    def release(self, address: str) -> None: ...


class UnsharedClaims:
    """For an agent alone on its machine: nobody else claims anything."""

    def claim(self, address: str, uid: str) -> bool:
        return True

    def release(self, address: str) -> None:
        return None


class AddressAllocator:
    """Hands out the lowest free pod address per pod uid; not thread-safe (the agent
    guards it with its own lock)."""

    def __init__(self, claims: AddressClaims | None = None) -> None:
        self._claims = claims or UnsharedClaims()
        self._by_uid: dict[str, int] = {}
        self._taken: set[int] = set()

    def allocate(self, uid: str) -> str:
        """The pod's address, allocating the lowest free one on first call."""
        if uid in self._by_uid:
            return address_of(self._by_uid[uid])
        for index in range(POD_ADDRESS_COUNT):
            if index not in self._taken and self._claims.claim(address_of(index), uid):
                self._by_uid[uid] = index
                self._taken.add(index)
                return address_of(index)
        raise AddressPoolExhausted(f"all {POD_ADDRESS_COUNT} loopback pod addresses in use")

    def adopt(self, uid: str, address: str) -> bool:
        """Re-claims the address a pod already publishes (after an agent restart).
        False when it is not a pod address or another live pod holds it."""
        index = index_of(address)
        if index is None:
            return False
        if self._by_uid.get(uid) == index:
            return True
        if index in self._taken or uid in self._by_uid:
            return False
        if not self._claims.claim(address, uid):
            return False
        self._by_uid[uid] = index
        self._taken.add(index)
        return True

    def release(self, uid: str) -> None:
        index = self._by_uid.pop(uid, None)
        if index is not None:
            self._taken.discard(index)
            self._claims.release(address_of(index))

    def in_use(self) -> dict[str, str]:
        return {uid: address_of(index) for uid, index in self._by_uid.items()}

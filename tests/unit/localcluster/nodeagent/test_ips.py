"""Loopback pod addresses: unique among live pods, lowest free first, freed on release."""

from __future__ import annotations

import pytest

from localcluster.nodeagent import ips
from localcluster.nodeagent.ips import AddressAllocator, AddressPoolExhausted, address_of, index_of


def test_addresses_start_at_127_0_0_2_and_are_unique() -> None:
    allocator = AddressAllocator()
    assert allocator.allocate("a") == "127.0.0.2"
    assert allocator.allocate("b") == "127.0.0.3"
    assert allocator.allocate("a") == "127.0.0.2"  # idempotent per pod
    assert allocator.in_use() == {"a": "127.0.0.2", "b": "127.0.0.3"}


def test_released_address_is_reused_lowest_first() -> None:
    allocator = AddressAllocator()
    for uid in "abc":
        allocator.allocate(uid)
    allocator.release("a")
    allocator.release("unknown")  # harmless
    assert allocator.allocate("d") == "127.0.0.2"
    assert allocator.allocate("e") == "127.0.0.5"


def test_adopt_keeps_published_address_unless_taken() -> None:
    allocator = AddressAllocator()
    assert allocator.adopt("old", "127.0.0.9")
    assert allocator.adopt("old", "127.0.0.9")
    assert not allocator.adopt("other", "127.0.0.9")
    assert not allocator.adopt("host", "127.0.0.1")
    assert not allocator.adopt("remote", "10.0.0.4")
    assert not allocator.adopt("junk", "not-an-ip")
    assert allocator.allocate("new") == "127.0.0.2"
    assert allocator.in_use()["old"] == "127.0.0.9"


def test_addresses_roll_into_the_next_octet() -> None:
    assert address_of(253) == "127.0.0.255"
    assert address_of(254) == "127.0.1.0"
    assert index_of("127.0.1.0") == 254
    assert index_of("127.0.0.1") is None


def test_exhaustion_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ips, "POD_ADDRESS_COUNT", 2)
    allocator = AddressAllocator()
    allocator.allocate("a")
    allocator.allocate("b")
    with pytest.raises(AddressPoolExhausted):
        allocator.allocate("c")


class TakenElsewhere:
    """Claims as another local cluster would hold them."""

    def __init__(self, taken: set[str]) -> None:
        self.taken = set(taken)
        self.released: list[str] = []

    def claim(self, address: str, uid: str) -> bool:
        if address in self.taken:
            return False
        self.taken.add(address)
        return True

    def release(self, address: str) -> None:
        self.released.append(address)
        self.taken.discard(address)


def test_addresses_claimed_by_other_clusters_are_skipped() -> None:
    claims = TakenElsewhere({"127.0.0.2", "127.0.0.4"})
    allocator = AddressAllocator(claims)
    assert allocator.allocate("a") == "127.0.0.3"
    assert allocator.allocate("b") == "127.0.0.5"
    assert not allocator.adopt("c", "127.0.0.4")
    allocator.release("a")
    assert claims.released == ["127.0.0.3"]
    assert allocator.allocate("d") == "127.0.0.3"

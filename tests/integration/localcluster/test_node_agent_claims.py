"""Machine-wide claims on pod addresses, shared by the agents of several local clusters.

Listeners of whatever else runs on this machine are ignored (`in_use=set`) except in the
test about listeners."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcluster.nodeagent.address_claims import MachineClaims, listening_addresses
from localcluster.nodeagent.ips import AddressAllocator


@pytest.fixture
def other_agent_pid() -> Iterator[int]:
    """A live process standing in for another cluster's agent."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        yield process.pid
    finally:
        process.kill()
        process.wait()


def test_two_agents_never_share_an_address(tmp_path: Path, other_agent_pid: int) -> None:
    ours = AddressAllocator(MachineClaims(tmp_path, tmp_path / "ours", in_use=set))
    theirs = AddressAllocator(
        MachineClaims(tmp_path, tmp_path / "theirs", agent_pid=other_agent_pid, in_use=set)
    )
    assert ours.allocate("pod-a") == "127.0.0.2"
    assert theirs.allocate("pod-b") == "127.0.0.3"
    assert ours.allocate("pod-c") == "127.0.0.4"
    assert not theirs.adopt("pod-d", "127.0.0.2")
    claim = json.loads((tmp_path / "127.0.0.3").read_text())
    assert (claim["agent_pid"], claim["pod_uid"]) == (other_agent_pid, "pod-b")

    ours.release("pod-a")
    assert not (tmp_path / "127.0.0.2").exists()
    assert theirs.allocate("pod-e") == "127.0.0.2"


def test_claims_of_a_dead_agent_are_taken_over(tmp_path: Path) -> None:
    dead_pid = 2**22 + 1  # above the default pid_max: never a live process
    dead = MachineClaims(tmp_path, tmp_path / "dead", agent_pid=dead_pid, in_use=set)
    assert AddressAllocator(dead).allocate("old-pod") == "127.0.0.2"
    survivor = AddressAllocator(MachineClaims(tmp_path, tmp_path / "alive", in_use=set))
    assert survivor.adopt("old-pod", "127.0.0.2")
    assert json.loads((tmp_path / "127.0.0.2").read_text())["agent_pid"] != dead_pid


def test_an_address_with_a_listener_is_not_handed_out(tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.2", 0))
        server.listen()
        assert "127.0.0.2" in listening_addresses()
        allocator = AddressAllocator(MachineClaims(tmp_path, tmp_path / "state"))
        assert allocator.allocate("pod") != "127.0.0.2"

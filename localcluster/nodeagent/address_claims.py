"""Machine-wide claims on loopback pod addresses (effects).

Every agent on the machine claims an address by creating `<claims dir>/<address>` under
an exclusive flock of `<claims dir>/.lock`. A claim whose agent process is gone is stale
and may be taken over, so a crashed agent never strands addresses. The directory is
`$WORKERFLEET_POD_ADDRESS_DIR`, else `<tmp>/workerfleet-pod-addresses`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from localcluster.nodeagent.process_groups import start_ticks

log = logging.getLogger("node-agent")

CLAIMS_DIR_ENV = "WORKERFLEET_POD_ADDRESS_DIR"
LOCK_NAME = ".lock"


def default_claims_dir() -> Path:
    configured = os.environ.get(CLAIMS_DIR_ENV)
    return (
        Path(configured)
        if configured
        else Path(tempfile.gettempdir()) / "workerfleet-pod-addresses"
    )


@dataclass(frozen=True)
class Claim:
    agent_pid: int
    agent_start_ticks: int | None
    state_dir: str
    pod_uid: str


TCP_LISTEN_STATE = "0A"


def listening_addresses(table: str = "/proc/net/tcp") -> set[str]:
    """IPv4 addresses with a listening TCP socket bound to them: an address in use by a
    process no claim knows about (an agent that predates claims, a stray server) is
    not handed out either."""
    try:
        lines = Path(table).read_text().splitlines()[1:]
    except OSError:
        return set()
    found = set()
    for line in lines:
        fields = line.split()
        if len(fields) > 3 and fields[3] == TCP_LISTEN_STATE:
            hex_address = fields[1].split(":")[0]
            found.add(".".join(str(b) for b in reversed(bytes.fromhex(hex_address))))
    return found


def _agent_alive(claim: Claim) -> bool:
    ticks = start_ticks(claim.agent_pid)
    return ticks is not None and (
        claim.agent_start_ticks is None or ticks == claim.agent_start_ticks
    )


class MachineClaims:
    def __init__(
        self,
        directory: Path,
        state_dir: Path,
        agent_pid: int | None = None,
        in_use: Callable[[], set[str]] = listening_addresses,
    ) -> None:
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)
        # Agents of other users share the addresses too.
        with contextlib.suppress(PermissionError):
            self._dir.chmod(0o1777)
        self._pid = agent_pid if agent_pid is not None else os.getpid()
        self._ticks = start_ticks(self._pid)
        self._state_dir = str(state_dir)
        self._in_use = in_use

    def claim(self, address: str, uid: str) -> bool:
        path = self._dir / address
        with self._locked():
            current = self._read(path)
            if current is not None and not self._ours(current) and _agent_alive(current):
                return False
            if (current is None or not self._ours(current)) and address in self._in_use():
                return False
            if current is not None and not self._ours(current):
                log.info(
                    "address %s: taking over the stale claim of dead agent pid %d",
                    address,
                    current.agent_pid,
                )
            claim = Claim(self._pid, self._ticks, self._state_dir, uid)
            temporary = path.with_name(f".{address}.{self._pid}")
            temporary.write_text(json.dumps(asdict(claim)))
            temporary.chmod(0o666)
            temporary.replace(path)
            return True

    def release(self, address: str) -> None:
        path = self._dir / address
        with self._locked():
            current = self._read(path)
            if current is not None and self._ours(current):
                path.unlink(missing_ok=True)

    def _ours(self, claim: Claim) -> bool:
        return claim.agent_pid == self._pid and claim.agent_start_ticks == self._ticks

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self._dir / LOCK_NAME, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @staticmethod
    def _read(path: Path) -> Claim | None:
        try:
            return Claim(**json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError):
            log.warning("unreadable address claim %s: treated as stale", path)
            return Claim(agent_pid=-1, agent_start_ticks=None, state_dir="", pod_uid="")

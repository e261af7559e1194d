"""Pod processes of the local node agent: each container process leads its own process
group (so a signal reaches everything it started), its output is appended to a log
file, and its pid is recorded under `<state_dir>/agent-pids/` until the group is gone,
so that processes outliving a SIGKILLed agent can still be found and killed
(`kill_leftover_pod_processes`)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger("node-agent")

PID_DIR_NAME = "agent-pids"
LEFTOVER_GRACE_SECONDS = 2.0
GROUP_POLL_INTERVAL_SECONDS = 0.05


class RegistryClosed(RuntimeError):
    """The agent is shutting down: no new process may start."""


@dataclass(frozen=True)
class ProcessRecord:
    pid: int
    pgid: int
    start_ticks: int | None
    namespace: str
    pod: str
    pod_uid: str
    container: str


def pid_dir(state_dir: Path) -> Path:
    return Path(state_dir) / PID_DIR_NAME


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat):
    with the pid it identifies a process even after its pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[19]) if len(fields) > 19 else None


def signal_group(pgid: int, signum: int) -> bool:
    """Signals a process group; False when no process is left in it."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        log.warning("not allowed to signal process group %d", pgid)
        return False
    return True


def group_alive(pgid: int) -> bool:
    return signal_group(pgid, 0)


class ProcessRegistry:
    """Starts pod processes and remembers them until they are released."""

    def __init__(self, state_dir: Path) -> None:
        self._dir = pid_dir(state_dir)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._live: dict[int, subprocess.Popen[bytes]] = {}
        self._closed = False

    def spawn(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str | None,
        log_path: Path,
        record: Mapping[str, str],
    ) -> subprocess.Popen[bytes]:
        """Starts argv in a new session (hence its own process group); raises
        RegistryClosed while shutting down, OSError when the program cannot start."""
        with self._lock:
            if self._closed:
                raise RegistryClosed("the node agent is shutting down")
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "ab") as output:
                process = subprocess.Popen(
                    list(argv),
                    env=dict(env),
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                )
            self._live[process.pid] = process
            self._write_record(
                ProcessRecord(
                    pid=process.pid,
                    pgid=process.pid,
                    start_ticks=start_ticks(process.pid),
                    namespace=record.get("namespace", ""),
                    pod=record.get("pod", ""),
                    pod_uid=record.get("pod_uid", ""),
                    container=record.get("container", ""),
                )
            )
            return process

    def release(self, process: subprocess.Popen[bytes]) -> None:
        """Forgets an exited process after killing what is left of its group: when a
        container's main process ends, so does everything it started."""
        signal_group(process.pid, signal.SIGKILL)
        with self._lock:
            self._live.pop(process.pid, None)
        with contextlib.suppress(FileNotFoundError):
            (self._dir / f"{process.pid}.json").unlink()

    def close(self) -> list[subprocess.Popen[bytes]]:
        """Refuses further spawns and returns the processes still registered."""
        with self._lock:
            self._closed = True
            return list(self._live.values())

    def _write_record(self, record: ProcessRecord) -> None:
        path = self._dir / f"{record.pid}.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(record)))
        temporary.replace(path)


def terminate_groups(processes: Sequence[subprocess.Popen[bytes]], grace_seconds: float) -> None:
    """SIGTERM every process group, wait up to grace_seconds for the leaders to exit,
    SIGKILL whatever remains of each group, and reap the leaders."""
    for process in processes:
        if process.poll() is None:
            signal_group(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + max(grace_seconds, 0.0)
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(deadline - time.monotonic(), 0.0))
    for process in processes:
        if process.poll() is None:
            log.info("pid %d still running after %.0fs grace: SIGKILL", process.pid, grace_seconds)
        signal_group(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5.0)


def read_records(state_dir: Path) -> list[tuple[Path, ProcessRecord]]:
    records = []
    for path in sorted(pid_dir(state_dir).glob("*.json")):
        try:
            records.append((path, ProcessRecord(**json.loads(path.read_text()))))
        except (OSError, ValueError, TypeError):
            log.warning("unreadable pid record %s: removed", path)
            with contextlib.suppress(OSError):
                path.unlink()
    return records


def kill_leftover_pod_processes(
    state_dir: Path | str, grace_seconds: float = LEFTOVER_GRACE_SECONDS
) -> list[int]:
    """Kills the process groups of pod processes recorded under `<state_dir>/agent-pids/`
    (left behind by an agent that was SIGKILLed): SIGTERM, up to grace_seconds, SIGKILL.
    A recorded pid now used by an unrelated process is left alone. Returns the process
    group ids that were signalled."""
    state = Path(state_dir)
    if not pid_dir(state).is_dir():
        return []
    doomed: list[int] = []
    records = read_records(state)
    for _path, record in records:
        current = start_ticks(record.pid)
        reused = (
            current is not None and record.start_ticks is not None and current != record.start_ticks
        )
        if not reused and group_alive(record.pgid):
            doomed.append(record.pgid)
            log.info(
                "killing leftover pod process group %d (%s/%s %s)",
                record.pgid,
                record.namespace,
                record.pod,
                record.container,
            )
            signal_group(record.pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while any(group_alive(pgid) for pgid in doomed) and time.monotonic() < deadline:
        time.sleep(GROUP_POLL_INTERVAL_SECONDS)
    for pgid in doomed:
        signal_group(pgid, signal.SIGKILL)
    # SIGKILL is asynchronous: give the kernel a moment so callers checking pids see them gone.
    deadline = time.monotonic() + grace_seconds
    while any(group_alive(pgid) for pgid in doomed) and time.monotonic() < deadline:
        time.sleep(GROUP_POLL_INTERVAL_SECONDS)
    for path, _record in records:
        with contextlib.suppress(OSError):
            path.unlink()
    return doomed

"""Background processes that outlive the Python process that started them.

Each process runs in its own session with its output in a log file, and its pid
is recorded in a file, so a later `down` (from another process) can find and
stop it. The command line is checked before signalling, so a recycled pid is
never mistaken for ours.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

STOP_TIMEOUT_SECONDS = 15.0
POLL_SECONDS = 0.1


class ManagedProcess:
    """A named process with ``<pid_dir>/<name>.pid`` and ``<log_dir>/<name>.log``."""

    def __init__(self, name: str, pid_dir: Path, log_dir: Path) -> None:
        self.name = name
        self.pid_file = pid_dir / f"{name}.pid"
        self.log_file = log_dir / f"{name}.log"
        self.marker_file = pid_dir / f"{name}.cmd"

    def pid(self) -> int | None:
        """The pid if the process is alive and is still the one we started."""
        try:
            pid = int(self.pid_file.read_text())
            marker = self.marker_file.read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        # Right after exec the command line can read empty for a moment: still ours.
        if (cmdline and marker not in cmdline) or _is_zombie(pid):
            return None
        return pid

    def is_running(self) -> bool:
        return self.pid() is not None

    def start(
        self,
        argv: Sequence[str],
        marker: str,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> int:
        """Start ``argv``; ``marker`` is a string in its command line that tells it
        apart from any other process (such as its state directory)."""
        if marker not in " ".join(argv):
            raise ValueError(f"marker {marker!r} does not occur in the command line")
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
            log.flush()
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
        self.pid_file.write_text(str(process.pid))
        self.marker_file.write_text(marker)
        return process.pid

    def exited_early(self) -> bool:
        return self.pid_file.exists() and self.pid() is None

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        pid = self.pid()
        if pid is not None:
            terminate(pid, timeout)
        for path in (self.pid_file, self.marker_file):
            path.unlink(missing_ok=True)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def terminate(pid: int, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
    """SIGTERM the process group, then SIGKILL it if it outlives ``timeout``."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(POLL_SECONDS)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    while _alive(pid) and time.monotonic() < deadline + 5:
        time.sleep(POLL_SECONDS)

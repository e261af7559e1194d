"""A throwaway PostgreSQL server for the tests and the demo.

initdb + pg_ctl from the Debian server binaries, in a directory of our own, on a
free port on 127.0.0.1. PostgreSQL refuses to run as root, so when the tests
run as root the server runs as an unprivileged user, and its files live in a
directory that user can reach (under the system temp directory, keyed by
``base_dir``): a root-only parent such as ``/root`` or pytest's private temp
root would lock it out, and loosening their modes is not ours to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from localcluster.loopback import free_port

PG_BIN_DIR = Path(os.environ.get("WORKERFLEET_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_START_TIMEOUT_SECONDS = 60
SUPERUSER = "workerfleet"
PASSWORD = "workerfleet-test-password"
UNPRIVILEGED_USERS = ("postgres", "nobody")


def _run_as() -> pwd.struct_passwd | None:
    """The account the server runs as when we are root, else None (ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in UNPRIVILEGED_USERS:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError(f"running as root and none of {UNPRIVILEGED_USERS} exists to run postgres")


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, cwd="/")
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed ({result.returncode}): "
            f"{result.stderr.strip() or result.stdout.strip()}"
        )


@dataclass
class PostgresServer:
    """One PostgreSQL cluster living in ``base_dir`` (created if missing)."""

    base_dir: Path
    port: int = 0
    host: str = "127.0.0.1"

    @property
    def home(self) -> Path:
        """Where the server's own files live: ``base_dir``, or a reachable twin as root."""
        if _run_as() is None:
            return self.base_dir
        key = hashlib.sha1(str(self.base_dir.resolve()).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / "workerfleet-postgres" / key

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def port_file(self) -> Path:
        return self.base_dir / "port"

    @property
    def log_file(self) -> Path:
        return self.home / "postgres.log"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}:{PASSWORD}@{self.host}:{self.port}/{database}"

    def _command(self, *args: str) -> list[str]:
        account = _run_as()
        binary = [str(PG_BIN_DIR / args[0]), *args[1:]]
        if account is None:
            return binary
        return [
            "setpriv",
            f"--reuid={account.pw_uid}",
            f"--regid={account.pw_gid}",
            "--clear-groups",
            *binary,
        ]

    def _prepare_home(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(parents=True, exist_ok=True)
        account = _run_as()
        if account is None:
            return
        self.home.parent.chmod(0o755)
        for path in [self.home, *self.home.rglob("*")]:
            os.chown(path, account.pw_uid, account.pw_gid, follow_symlinks=False)

    def initialise(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if (self.data_dir / "PG_VERSION").exists():
            return
        self._prepare_home()
        password_file = self.home / "pwfile"
        password_file.write_text(PASSWORD + "\n")
        self._prepare_home()
        _run(
            self._command(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                f"--pwfile={password_file}",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
                "--locale=C",
            )
        )
        password_file.unlink()

    def is_running(self) -> bool:
        if not self.port_file.exists():
            return False
        self.port = int(self.port_file.read_text())
        result = subprocess.run(
            self._command("pg_ctl", "status", "-D", str(self.data_dir)),
            capture_output=True,
            cwd="/",
        )
        return result.returncode == 0

    def start(self) -> str:
        """Start (or reuse) the server and return the superuser DSN."""
        self.initialise()
        if self.is_running():
            return self.dsn()
        if not self.port:
            self.port = free_port(self.host)
        self.port_file.write_text(str(self.port))
        # fsync off and a small WAL: this server holds nothing worth keeping. 500
        # connections: 20 workers at concurrency 10 (make bench-scale) hold about 320.
        options = (
            f"-c listen_addresses={self.host} -c port={self.port} "
            f"-c unix_socket_directories={self.home} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=500 "
            "-c shared_buffers=256MB"
        )
        self._prepare_home()
        _run(
            self._command(
                "pg_ctl",
                "start",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-o",
                options,
                "-w",
                "-t",
                str(PG_START_TIMEOUT_SECONDS),
            )
        )
        self._wait_accepting()
        return self.dsn()

    def _wait_accepting(self) -> None:
        deadline = time.monotonic() + PG_START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            result = subprocess.run(
                [str(PG_BIN_DIR / "pg_isready"), "-h", self.host, "-p", str(self.port)],
                capture_output=True,
            )
            if result.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"postgres did not accept connections; see {self.log_file}")

    def stop(self, mode: str = "fast") -> None:
        if not self.data_dir.exists():
            return
        subprocess.run(
            self._command("pg_ctl", "stop", "-D", str(self.data_dir), "-m", mode, "-w"),
            capture_output=True,
            cwd="/",
        )

    def restart(self, mode: str = "fast") -> None:
        """Stop and start again in place: same data directory, same port. ``fast`` ends
        every client's session as a server restart does (clients see AdminShutdown)."""
        self.stop(mode)
        self.start()

    def pid(self) -> int | None:
        pid_file = self.data_dir / "postmaster.pid"
        with contextlib.suppress(FileNotFoundError, ValueError):
            return int(pid_file.read_text().splitlines()[0])
        return None

    def psql(self, sql: str, database: str = "postgres") -> str:
        env = {**os.environ, "PGPASSWORD": PASSWORD}
        result = subprocess.run(
            [
                str(PG_BIN_DIR / "psql"),
                "-X",
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                database,
                "-c",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        )
        return result.stdout.strip()

    def create_database(self, prefix: str = "wf") -> str:
        """A fresh, empty database; returns its DSN."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.home, ignore_errors=True)
        shutil.rmtree(self.base_dir, ignore_errors=True)

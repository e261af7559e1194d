"""Running real ``workerfleet-worker`` processes for the runtime's integration tests."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localcluster.loopback import free_port
from localcluster.waiting import wait_for_async
from tests.integration.worker_runtime import runtime_tasks

WORKER_BINARY = Path(sys.executable).parent / "workerfleet-worker"
# The repository root cannot go on PYTHONPATH (its operator/ would shadow the standard
# library's), so the workers import the test tasks from a folder holding only them.
TEST_HANDLERS = "wf_runtime_test_tasks"
_HANDLERS_DIR = Path(tempfile.mkdtemp(prefix="wf-runtime-tasks-"))
(_HANDLERS_DIR / f"{TEST_HANDLERS}.py").symlink_to(Path(runtime_tasks.__file__).resolve())
atexit.register(shutil.rmtree, _HANDLERS_DIR, True)
WAIT_SECONDS = 60.0
POLL_SECONDS = 0.05

# Fast settings so the tests do not wait for production-sized intervals.
FAST_ENV = {
    "WORKERFLEET_POLL_INTERVAL": "200ms",
    "WORKERFLEET_HEARTBEAT_INTERVAL": "300ms",
    "WORKERFLEET_LEASE_DURATION": "5s",
    "WORKERFLEET_RETRY_BASE": "50ms",
    "WORKERFLEET_RETRY_CAP": "200ms",
    "WORKERFLEET_SHUTDOWN_GRACE": "20s",
    "WORKERFLEET_HEALTH_LOG_INTERVAL": "1s",
    "WORKERFLEET_LOG_LEVEL": "DEBUG",
}


def http_get(port: int, path: str) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=5) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())


@dataclass
class Worker:
    """One worker process with its own probe port and log file."""

    dsn: str
    queues: str = "runtime"
    handlers: str = TEST_HANDLERS
    concurrency: int = 4
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(
        default_factory=lambda: Path(tempfile.mkstemp(prefix="wf-worker-", suffix=".log")[1])
    )

    def environment(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("WORKERFLEET_", "POD_"))
        }
        env.update(FAST_ENV)
        env.update(
            {
                "WORKERFLEET_DSN": self.dsn,
                "WORKERFLEET_QUEUES": self.queues,
                "WORKERFLEET_HANDLERS": self.handlers,
                "WORKERFLEET_CONCURRENCY": str(self.concurrency),
                "WORKERFLEET_HEALTH_HOST": "127.0.0.1",
                "WORKERFLEET_HEALTH_PORT": str(self.port),
                runtime_tasks.DSN_VARIABLE: self.dsn,
                "PYTHONPATH": str(_HANDLERS_DIR),
            }
        )
        env.update(self.extra_env)
        return env

    def start(self) -> Worker:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(WORKER_BINARY)],
                env=self.environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd="/",
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def get(self, path: str) -> tuple[int, bytes]:
        return http_get(self.port, path)

    def get_json(self, path: str) -> tuple[int, Any]:
        code, body = self.get(path)
        return code, json.loads(body)

    def probe(self, path: str) -> int | None:
        try:
            return self.get(path)[0]
        except (OSError, urllib.error.URLError):
            return None

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.logs().splitlines():
            if line.startswith("{"):
                events.append(json.loads(line))
        return events

    def metric(self, name: str, **labels: str) -> float:
        from prometheus_client.parser import text_string_to_metric_families

        _, body = self.get("/metrics")
        total = 0.0
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    total += sample.value
        return total

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait_exit(self, timeout: float = WAIT_SECONDS) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        """Cleanup: SIGTERM, then SIGKILL if it will not go."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


async def eventually(check: Callable[[], Any], what: str, within: float = WAIT_SECONDS) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy; fail naming ``what``."""
    return await wait_for_async(what, check, timeout=within, interval=POLL_SECONDS)


async def wait_ready(worker: Worker, within: float = WAIT_SECONDS) -> None:
    def ready() -> bool:
        if worker.process is not None and worker.process.poll() is not None:
            raise AssertionError(f"worker exited early:\n{worker.logs()[-4000:]}")
        return worker.probe("/readyz") == 200

    await eventually(ready, f"worker on port {worker.port} to become ready", within)

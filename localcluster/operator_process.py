"""The operator as a local process, for the demo and the tests.

`workerfleet-operator` is the console script of the environment that runs this code (the
directory of `sys.executable`, else the PATH), so a checkout's virtualenv, CI's and an
installed one all work without naming a path.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from localcluster.loopback import LOOPBACK, free_port, loopback_no_proxy
from localcluster.waiting import wait_for

OPERATOR_SCRIPT = "workerfleet-operator"
OPERATOR_STOP_SECONDS = 15.0
READY_TIMEOUT_SECONDS = 60.0
HTTP_TIMEOUT_SECONDS = 5.0


def console_script(name: str) -> str:
    """The path of console script ``name`` installed beside the running interpreter,
    else on the PATH; a clear error when neither has it."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(
            f"{name} is neither beside {sys.executable} nor on the PATH: "
            "install the project (make venv) and run from its environment"
        )
    return found


class OperatorProcess:
    """``workerfleet-operator`` serving one namespace, its output appended to ``log_path``,
    its health and metrics on a free loopback port; ``settings``: more environment
    (WORKERFLEET_OPERATOR_* variables)."""

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        log_path: Path,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.env = {
            **os.environ,
            **(settings or {}),
            "KUBECONFIG": str(kubeconfig),
            "WORKERFLEET_OPERATOR_NAMESPACES": namespace,
            "WORKERFLEET_OPERATOR_HEALTH_HOST": LOOPBACK,
            "WORKERFLEET_OPERATOR_HEALTH_PORT": str(self.port),
            "NO_PROXY": loopback_no_proxy(os.environ.get("NO_PROXY")),
        }
        self.process = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        with open(self.log_path, "ab") as log:
            return subprocess.Popen(
                [console_script(OPERATOR_SCRIPT)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def restart(self) -> int | None:
        """Stop (as :meth:`stop`) and start again on the same port and log; the exit code."""
        code = self.stop()
        self.process = self._spawn()
        return code

    @property
    def pid(self) -> int:
        return self.process.pid

    def url(self, path: str) -> str:
        return f"http://{LOOPBACK}:{self.port}{path}"

    def get(self, path: str) -> tuple[int, str]:
        """GET from the health server: (status, body), also for error statuses."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(self.url(path), timeout=HTTP_TIMEOUT_SECONDS) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as error:
            return int(error.code), error.read().decode()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        """Until /readyz answers 200; fails at once, with the log, if the operator exits."""

        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"{OPERATOR_SCRIPT} exited with {self.process.returncode}:\n"
                    f"{self.logs()[-2000:]}"
                )
            return self.get("/readyz")[0] == 200

        wait_for(
            f"{OPERATOR_SCRIPT}'s /readyz",
            ready,
            timeout=timeout,
            describe=lambda: self.logs()[-2000:],
        )

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it outlives OPERATOR_STOP_SECONDS; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(OPERATOR_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

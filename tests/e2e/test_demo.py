"""`make demo DEMO_SECONDS=60` runs unattended and exits 0 having drained its jobs, with
the operator as a process (the default) or installed by the Helm chart (DEMO_INSTALL=helm)."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from localcluster.control_plane import REPO_ROOT

pytestmark = pytest.mark.cluster

DEMO_TIMEOUT_SECONDS = 600


@pytest.mark.parametrize("install", ["process", "helm"])
def test_make_demo_drains_its_jobs_and_cleans_up(install: str) -> None:
    result = subprocess.run(
        ["make", "--no-print-directory", "demo", "DEMO_SECONDS=60", f"DEMO_INSTALL={install}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_SECONDS,
        env={**os.environ, "NO_PROXY": "127.0.0.1,localhost"},
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    drained = re.search(r"drained: (\d+) succeeded, (\d+) dead-lettered", output)
    assert drained is not None, output[-5000:]
    enqueued = re.search(r"enqueued (\d+) jobs", output)
    assert enqueued is not None
    assert int(drained.group(1)) + int(drained.group(2)) == int(enqueued.group(1))
    assert int(enqueued.group(1)) >= 200
    # The table was shown with the pool's printer columns while draining.
    assert re.search(
        r"NAME\s+QUEUE\s+DESIRED\s+READY\s+PENDING\s+RUNNING\s+OLDEST\s+STATUS", output
    )
    # The pool grows with its queue (min 2, max 4); at some refresh all it wanted was ready.
    assert re.search(r"workerpool\.workerfleet\.dev/demo\s+demo\s+([2-4])\s+\1\s", output)
    if install == "helm":
        assert "helm release workerfleet in namespace workerfleet" in output
        assert re.search(r"lease\.coordination\.k8s\.io/workerfleet\s+workerfleet-", output)
    else:
        assert "operator pid" in output
    assert "tearing down" in output
    assert result.stdout.rstrip().endswith("done")

"""`make demo DEMO_SECONDS=60` runs unattended and exits 0 having drained its jobs."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from localcluster.control_plane import REPO_ROOT

pytestmark = pytest.mark.cluster

DEMO_TIMEOUT_SECONDS = 600


def test_make_demo_drains_its_jobs_and_cleans_up() -> None:
    result = subprocess.run(
        ["make", "--no-print-directory", "demo", "DEMO_SECONDS=60"],
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
    assert re.search(r"workerpool\.workerfleet\.dev/demo\s+demo\s+2\s+2\s", output)
    assert "tearing down" in output
    assert result.stdout.rstrip().endswith("done")

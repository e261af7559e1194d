"""Third-party tools the tests drive besides Kubernetes (promtool; KEDA for the autoscaling
work), built from their Go modules by ``build-tools.sh`` and cached by version like the
Kubernetes binaries (``~/.cache/workerfleet/<tool>/<version>/``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

BUILD_SCRIPT = Path(__file__).resolve().parent / "build-tools.sh"


class ToolError(RuntimeError):
    """The tool could not be built; the message carries the script's last words."""


def tool_dir(tool: str) -> Path:
    """The directory holding ``tool``, built first if it is not cached."""
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT), tool], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ToolError(
            f"{BUILD_SCRIPT} {tool} failed ({result.returncode}): {result.stderr.strip()[-2000:]}"
        )
    return Path(result.stdout.strip().splitlines()[-1])


def promtool() -> Path:
    return tool_dir("promtool") / "promtool"

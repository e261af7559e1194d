"""Third-party tools the tests drive besides Kubernetes (promtool; KEDA's operator and
metrics adapter for the scaling benchmark), built from their Go modules by
``build-tools.sh`` and cached by version like the Kubernetes binaries
(``~/.cache/workerfleet/<tool>/<version>/``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

BUILD_SCRIPT = Path(__file__).resolve().parent / "build-tools.sh"
# build-tools.sh --cached exits with this when the tool is not built yet.
NOT_CACHED_EXIT_CODE = 3


class ToolError(RuntimeError):
    """The tool could not be built; the message carries the script's last words."""


class ToolNotBuilt(ToolError):
    """The tool is not in the cache and was not to be built."""


def tool_dir(tool: str, build: bool = True, quiet: bool = True) -> Path:
    """The directory holding ``tool``, built first if it is not cached and ``build``
    (else ToolNotBuilt). ``quiet=False`` lets the build's progress reach the terminal."""
    argv = ["bash", str(BUILD_SCRIPT), *([] if build else ["--cached"]), tool]
    result = subprocess.run(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE if quiet else None, text=True
    )
    said = (result.stderr or "").strip()[-2000:]
    if result.returncode == NOT_CACHED_EXIT_CODE and not build:
        raise ToolNotBuilt(said or f"{tool} is not built: run {BUILD_SCRIPT} {tool}")
    if result.returncode != 0:
        raise ToolError(f"{BUILD_SCRIPT} {tool} failed ({result.returncode}): {said}")
    return Path(result.stdout.strip().splitlines()[-1])


def promtool() -> Path:
    return tool_dir("promtool") / "promtool"

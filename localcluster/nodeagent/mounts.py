"""Volume mounts of a pod process: a private mount namespace with read-only binds.

A container that mounts a materialized volume starts as

    unshare --mount --propagation private -- sh -c BIND_SCRIPT sh N SRC1 DST1 ... -- CMD...

`unshare` gives the process a mount namespace of its own (the host and every other pod
keep seeing their own files at the same paths), the script binds each source read-only
onto its target and then `exec`s the command, so the pid the agent records is the
command's own. Mount namespaces need CAP_SYS_ADMIN (the agent runs as root in CI and
in the sandboxes here); `mount_namespaces()` tells, once, whether this agent
has it, and a container that needs a mount where it cannot waits with that reason.

The mount points are created on the host (empty directories, or empty files for a
file subPath), as a mount needs an existing target.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from localcluster.nodeagent.volumes import Bind, VolumeError

# Where the tools are looked up: the container's own PATH may not have them.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
UNSHARE_OPTIONS = ("--mount", "--propagation", "private", "--")
# Positional parameters: mount(8), N, N pairs of source and target, "--", the command.
BIND_SCRIPT = """
mount=$1; n=$2; shift 2
while [ "$n" -gt 0 ]; do
  "$mount" --bind "$1" "$2" && "$mount" -o remount,bind,ro "$2" || {
    echo "local node agent: cannot mount $1 on $2" >&2; exit 126; }
  shift 2; n=$((n - 1))
done
shift
exec "$@"
""".strip()
PROBE_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Tools:
    """Absolute paths of the programs that set the mounts up."""

    unshare: str
    sh: str
    mount: str

    @classmethod
    def find(cls) -> Tools | None:
        found = [shutil.which(name, path=SYSTEM_PATH) for name in ("unshare", "sh", "mount")]
        if any(path is None for path in found):
            return None
        unshare, sh, mount = (str(path) for path in found)
        return cls(unshare, sh, mount)


def wrap_command(argv: Sequence[str], binds: Sequence[Bind], tools: Tools) -> list[str]:
    """The command line that runs `argv` with `binds` in place; `argv` when none."""
    if not binds:
        return list(argv)
    pairs = [part for bind in binds for part in (str(bind.source), bind.target)]
    return [
        tools.unshare,
        *UNSHARE_OPTIONS,
        tools.sh,
        "-c",
        BIND_SCRIPT,
        "sh",
        tools.mount,
        str(len(binds)),
        *pairs,
        "--",
        *argv,
    ]


def mount_namespaces(tools: Tools | None) -> str | None:
    """None when this process can make mount namespaces with `tools`, else why not."""
    if tools is None:
        return f"unshare, sh and mount (util-linux) are not on {SYSTEM_PATH}"
    try:
        result = subprocess.run(
            [tools.unshare, *UNSHARE_OPTIONS, tools.sh, "-c", "true"],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_SECONDS,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unshare --mount failed: {error}"
    if result.returncode != 0:
        return f"unshare --mount failed: {result.stderr.strip() or result.returncode}"
    return None


def prepare_targets(binds: Sequence[Bind]) -> None:
    """Creates each mount point: a directory for a directory, an empty file for a file."""
    for bind in binds:
        target = Path(bind.target)
        try:
            if bind.source.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.exists():
                    target.touch()
        except OSError as error:
            raise VolumeError(f"cannot create mount point {target}: {error}") from error
        if not os.path.exists(bind.source):
            raise VolumeError(f"{bind.source} does not exist (subPath not in the volume?)")

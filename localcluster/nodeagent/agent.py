"""The node agent process: a small kubelet stand-in for the test and demo cluster.

It registers a Node, keeps its Lease fresh, and runs every pod scheduled to it as local
processes (one process group per container, command + args from the agent's PATH, the
image is never pulled), each pod on its own loopback address 127.0.0.N. Probes run for
real; pod status is patched when it changes; deletion stops the processes (SIGTERM,
grace period, SIGKILL) before the pod object is let go.

    python -m localcluster.nodeagent --kubeconfig K --node-name N --state-dir S --log-dir L

SIGTERM or SIGINT stops every pod process (SIGTERM, SHUTDOWN_GRACE_SECONDS, SIGKILL) and
exits; pods are left as they are in the API. Pod pids are recorded under
`<state-dir>/agent-pids/`, so `kill_leftover_pod_processes(state_dir)` can clean up after
an agent that was SIGKILLed.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from localcluster.nodeagent.address_claims import MachineClaims, default_claims_dir
from localcluster.nodeagent.api import ApiError, KubeApi
from localcluster.nodeagent.ips import AddressAllocator, AddressClaims, UnsharedClaims
from localcluster.nodeagent.node import NodeHeartbeat, gather_facts
from localcluster.nodeagent.node_status import allocatable, parse_taints
from localcluster.nodeagent.pod import AgentServices, PodWorker, pod_key
from localcluster.nodeagent.process_groups import (
    ProcessRegistry,
    kill_leftover_pod_processes,
    terminate_groups,
)

__all__ = ["NodeAgent", "main"]

log = logging.getLogger("node-agent")

JsonDict = dict[str, Any]

SHUTDOWN_GRACE_SECONDS = 5.0
WATCH_TIMEOUT_SECONDS = 240
WATCH_READ_SLACK_SECONDS = 30.0
WATCH_RETRY_INITIAL_SECONDS = 0.5
WATCH_RETRY_CAP_SECONDS = 5.0
# Uids of pods already let go; their late watch events are ignored. Bounded.
FINISHED_UIDS_KEPT = 10_000


def agent_path(interpreter: str, inherited: str) -> str:
    """PATH with the directory of the agent's own interpreter in front, so `python` and
    the console scripts resolve to the environment the cluster was started from."""
    venv_bin = os.path.dirname(os.path.abspath(interpreter))
    parts = [venv_bin, *(p for p in inherited.split(os.pathsep) if p and p != venv_bin)]
    return os.pathsep.join(parts)


def base_environment(environ: dict[str, str] | os._Environ[str], path: str) -> dict[str, str]:
    """The minimal environment every pod process starts from."""
    return {
        "PATH": path,
        "HOME": environ.get("HOME") or "/root",
        "LANG": environ.get("LANG") or "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
    }


def machine_claims(state_dir: Path) -> AddressClaims:
    """Address claims shared with every agent on this machine, if the claims directory
    is usable; otherwise this agent's own bookkeeping only."""
    directory = default_claims_dir()
    try:
        return MachineClaims(directory, state_dir)
    except OSError as error:
        log.warning(
            "address claims directory %s unusable (%s): addresses are not "
            "coordinated with other local clusters",
            directory,
            error,
        )
        return UnsharedClaims()


class NodeAgent:
    def __init__(
        self,
        kubeconfig: str,
        node_name: str,
        state_dir: Path,
        log_dir: Path,
        shutdown_grace_seconds: float = SHUTDOWN_GRACE_SECONDS,
        taints: Sequence[JsonDict] = (),
        cpu: int | None = None,
        memory_bytes: int | None = None,
    ) -> None:
        self.cpu = cpu
        self.memory_bytes = memory_bytes
        self.node_name = node_name
        self.taints = list(taints)
        self.state_dir = state_dir
        self.shutdown_grace_seconds = shutdown_grace_seconds
        self.stop = threading.Event()
        self.api = KubeApi(kubeconfig)
        self.registry = ProcessRegistry(state_dir)
        path = agent_path(sys.executable, os.environ.get("PATH", ""))
        os.environ["PATH"] = path
        self.services = AgentServices(
            api=self.api,
            registry=self.registry,
            addresses=AddressAllocator(machine_claims(state_dir)),
            addresses_lock=threading.Lock(),
            log_dir=log_dir,
            base_env=base_environment(os.environ, path),
            stop=self.stop,
            on_done=self._pod_done,
        )
        self._lock = threading.Lock()
        self._workers: dict[str, PodWorker] = {}
        self._finished: dict[str, None] = {}

    # -- lifecycle -------------------------------------------------------------------------

    def run(self) -> int:
        leftovers = kill_leftover_pod_processes(self.state_dir)
        if leftovers:
            log.info("killed %d process group(s) left by a previous agent", len(leftovers))
        facts = gather_facts(
            self.api, self.node_name, self.state_dir, self.stop, self.cpu, self.memory_bytes
        )
        self.services.node = allocatable(facts)
        heartbeat = NodeHeartbeat(self.api, facts, self.stop, self.taints)
        try:
            heartbeat.register()
        except ApiError as error:
            if not self.stop.is_set():
                log.error("cannot register node %s: %s", self.node_name, error)
                return 1
        heartbeat.start()
        threading.Thread(target=self._watch_pods, name="pod-watch", daemon=True).start()
        self.stop.wait()
        self.shutdown()
        return 0

    def request_stop(self, signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        self.stop.set()

    def shutdown(self) -> None:
        """Stops every pod process: SIGTERM, a short grace, SIGKILL."""
        self.stop.set()
        processes = self.registry.close()
        if processes:
            log.info("stopping %d pod process group(s)", len(processes))
        terminate_groups(processes, self.shutdown_grace_seconds)
        for process in processes:
            self.registry.release(process)
        log.info("node agent stopped")

    # -- pods ------------------------------------------------------------------------------

    def pod_seen(self, pod: JsonDict) -> None:
        uid = str(pod["metadata"]["uid"])
        with self._lock:
            if self.stop.is_set() or uid in self._finished:
                return
            worker = self._workers.get(uid)
            if worker is None:
                worker = PodWorker(pod, self.services)
                self._workers[uid] = worker
                worker.start()
                return
        worker.set_pod(pod)

    def pod_removed(self, uid: str) -> None:
        with self._lock:
            worker = self._workers.get(uid)
        if worker is not None:
            worker.pod_gone()

    def _pod_done(self, uid: str) -> None:
        with self._lock:
            self._workers.pop(uid, None)
            self._finished[uid] = None
            while len(self._finished) > FINISHED_UIDS_KEPT:
                self._finished.pop(next(iter(self._finished)))

    def _known_uids(self) -> set[str]:
        with self._lock:
            return set(self._workers)

    def _watch_pods(self) -> None:
        """List, then watch from the list's resourceVersion; relist on 410 Gone or on
        any failure, with capped back-off."""
        delay = WATCH_RETRY_INITIAL_SECONDS
        failing = False
        while not self.stop.is_set():
            try:
                version: str | None = self._relist()
                if failing:
                    log.info("pod watch recovered: relisted at resourceVersion %s", version)
                delay, failing = WATCH_RETRY_INITIAL_SECONDS, False
                while not self.stop.is_set() and version is not None:
                    version = self._watch_once(version)
            except ApiError as error:
                failing = True
                log.warning("pod watch failed (%s); relisting in %.1fs", error, delay)
            except Exception:
                failing = True
                log.exception("pod watch error; relisting in %.1fs", delay)
            if self.stop.wait(delay):
                return
            delay = min(delay * 2, WATCH_RETRY_CAP_SECONDS)

    def _field_selector(self) -> str:
        return f"spec.nodeName={self.node_name}"

    def _relist(self) -> str:
        listing = self.api.get("/api/v1/pods", fieldSelector=self._field_selector())
        present = set()
        for pod in listing.get("items") or []:
            present.add(str(pod["metadata"]["uid"]))
            self.pod_seen(pod)
        for uid in self._known_uids() - present:
            self.pod_removed(uid)
        return str(listing["metadata"]["resourceVersion"])

    def _watch_once(self, version: str) -> str | None:
        """One watch request; returns the version to resume from, None to relist."""
        query = {
            "fieldSelector": self._field_selector(),
            "resourceVersion": version,
            "allowWatchBookmarks": True,
            "timeoutSeconds": WATCH_TIMEOUT_SECONDS,
        }
        for event in self.api.watch(
            "/api/v1/pods", query, WATCH_TIMEOUT_SECONDS + WATCH_READ_SLACK_SECONDS
        ):
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    log.info("pod watch expired (410): relisting")
                    return None
                raise ApiError(int(obj.get("code") or 0), f"watch error: {obj.get('message')}")
            version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
            if kind in ("ADDED", "MODIFIED"):
                self.pod_seen(obj)
            elif kind == "DELETED":
                log.info("pod %s deleted from the API", pod_key(obj))
                self.pod_removed(str(obj["metadata"]["uid"]))
            if self.stop.is_set():
                return None
        return version


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node-name", required=True)
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--log-dir", required=True, type=Path)
    parser.add_argument(
        "--shutdown-grace",
        type=float,
        default=SHUTDOWN_GRACE_SECONDS,
        help="seconds between SIGTERM and SIGKILL of pod processes when the agent stops",
    )
    parser.add_argument(
        "--register-with-taints",
        default="",
        help="taints for a newly registered node: key[=value]:Effect,... (default: none)",
    )
    parser.add_argument(
        "--cpu", type=int, default=None, help="cpu capacity to report (default: os.cpu_count())"
    )
    parser.add_argument(
        "--memory-mib",
        type=int,
        default=None,
        help="memory capacity to report in MiB (default: the machine's MemTotal)",
    )
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s node-agent [%(threadName)s] %(message)s",
    )
    # urllib3 logs every transport retry; the agent logs the failed call once itself.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    args.state_dir.mkdir(parents=True, exist_ok=True)
    args.log_dir.mkdir(parents=True, exist_ok=True)
    try:
        taints = parse_taints(args.register_with_taints)
    except ValueError as error:
        print(f"--register-with-taints: {error}", file=sys.stderr)
        return 2
    agent = NodeAgent(
        args.kubeconfig,
        args.node_name,
        args.state_dir,
        args.log_dir,
        args.shutdown_grace,
        taints,
        args.cpu,
        args.memory_mib * 1024 * 1024 if args.memory_mib else None,
    )
    signal.signal(signal.SIGTERM, agent.request_stop)
    signal.signal(signal.SIGINT, agent.request_stop)
    return agent.run()

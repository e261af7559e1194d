"""One container of a pod as a supervised local process (effects).

A ContainerRunner thread resolves the container's env, starts its command, runs its
probes, and restarts it per restartPolicy with crash-loop back-off; the pod worker reads
`snapshot()` to build the pod status and calls `request_stop()` to take it down.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from localcluster.nodeagent import env, probes, restart
from localcluster.nodeagent.api import ApiError, KubeApi
from localcluster.nodeagent.prober import ProbeContext, run_probe
from localcluster.nodeagent.process_groups import ProcessRegistry, RegistryClosed, terminate_groups
from localcluster.nodeagent.restart import ResumeState
from localcluster.nodeagent.status import (
    ContainerSnapshot,
    ContainerState,
    Running,
    Terminated,
    Waiting,
    waiting_message_no_command,
)

log = logging.getLogger("node-agent")

JsonDict = dict[str, Any]

CONFIG_RETRY_SECONDS = 2.0
# How often a running process is checked for exit between probes.
EXIT_POLL_INTERVAL_SECONDS = 0.2
NO_COMMAND_REASON = "NoCommand"


@dataclass(frozen=True)
class PodContext:
    """What every container of one pod shares."""

    namespace: str
    pod_name: str
    pod_uid: str
    pod_ip: str
    host_ip: str
    restart_policy: str
    termination_grace_seconds: float
    log_dir: Path
    base_env: Mapping[str, str]
    node: env.NodeAllocatable = field(default_factory=env.NodeAllocatable)

    def log_path(self, container: str) -> Path:
        return self.log_dir / f"{self.namespace}_{self.pod_name}_{container}.log"


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str]
    cwd: str | None


class LaunchError(Exception):
    """The command cannot be started (e.g. not on PATH): reported as a StartError exit."""


def _now() -> datetime:
    return datetime.now(UTC)


class ContainerRunner(threading.Thread):
    def __init__(
        self,
        container: Mapping[str, Any],
        context: PodContext,
        *,
        pod_source: Callable[[], JsonDict],
        notify: Callable[[], None],
        api: KubeApi,
        registry: ProcessRegistry,
        resume: ResumeState,
        init_container: bool = False,
    ) -> None:
        name = str(container.get("name", ""))
        super().__init__(name=f"{context.namespace}/{context.pod_name}/{name}", daemon=True)
        self.container = container
        self.container_name = name
        self.init_container = init_container
        self._context = context
        self._pod_source = pod_source
        self._notify = notify
        self._api = api
        self._registry = registry
        self._resume = resume
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._state: ContainerState = resume.state
        self._restart_count = resume.restart_count
        self._last_state = resume.last_state
        self._has_run = resume.has_run
        self._ready = False
        self._startup_done = False
        self._container_id = (
            resume.state.container_id if isinstance(resume.state, Terminated) else ""
        )
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = False

    # -- what the pod worker uses -------------------------------------------------------

    def snapshot(self) -> ContainerSnapshot:
        with self._lock:
            return ContainerSnapshot(
                name=self.container_name,
                image=str(self.container.get("image", "")),
                state=self._state,
                restart_count=self._restart_count,
                last_state=self._last_state,
                ready=self._ready,
                started=self._startup_done,
                container_id=self._container_id,
            )

    def request_stop(self) -> subprocess.Popen[bytes] | None:
        """No further starts; returns the running process (the caller terminates it)."""
        with self._lock:
            self._stopping = True
            process = self._process
        self._wake.set()
        return process

    def succeeded(self) -> bool:
        state = self.snapshot().state
        return isinstance(state, Terminated) and state.exit_code == 0

    # -- the supervision loop ------------------------------------------------------------

    def run(self) -> None:
        try:
            self._supervise()
        except Exception as error:
            log.exception("container %s: supervisor failed", self.name)
            self._set(state=Waiting("AgentError", f"local node agent error: {error}"))
        finally:
            self._notify()

    def _supervise(self) -> None:
        if not self._resume.start:
            return
        if not self.container.get("command"):
            self._set(state=Waiting(NO_COMMAND_REASON, waiting_message_no_command(self.container)))
            log.warning("container %s has no command: not started", self.name)
            return
        consecutive_restarts = 0
        while not self._is_stopping():
            try:
                launch = self._prepare()
            except (env.ContainerConfigError, ApiError) as error:
                reason = (
                    env.CONFIG_ERROR_REASON
                    if isinstance(error, env.ContainerConfigError)
                    else "ContainerCreating"
                )
                self._set(state=Waiting(reason, str(error)))
                log.info("container %s waits: %s: %s", self.name, reason, error)
                if self._wake.wait(CONFIG_RETRY_SECONDS):
                    return
                continue
            except LaunchError as error:
                ended = _now()
                outcome: Terminated | None = Terminated(
                    exit_code=restart.START_ERROR_EXIT_CODE,
                    reason="StartError",
                    message=str(error),
                    started_at=ended,
                    finished_at=ended,
                )
            else:
                outcome = self._run_once(launch)
            if outcome is None or self._is_stopping():
                if outcome is not None:
                    self._set(state=outcome, ready=False)
                return
            ran = (
                outcome.finished_at - (outcome.started_at or outcome.finished_at)
            ).total_seconds()
            if not restart.should_restart(
                self._context.restart_policy, outcome.exit_code, init_container=self.init_container
            ):
                self._set(state=outcome, ready=False, started=False)
                log.info(
                    "container %s exited %d: not restarted (restartPolicy %s)",
                    self.name,
                    outcome.exit_code,
                    self._context.restart_policy,
                )
                return
            consecutive_restarts = restart.next_consecutive_restarts(consecutive_restarts, ran)
            delay = restart.restart_delay_seconds(consecutive_restarts)
            message = (
                f"back-off {delay:g}s restarting failed container={self.container_name} "
                f"pod={self._context.pod_name}_{self._context.namespace}({self._context.pod_uid})"
            )
            self._set(
                state=Waiting("CrashLoopBackOff", message),
                last_state=outcome,
                ready=False,
                started=False,
            )
            log.info(
                "container %s exited %d (%s): restart in %gs",
                self.name,
                outcome.exit_code,
                outcome.reason,
                delay,
            )
            if self._wake.wait(delay):
                self._set(state=outcome)
                return

    def _run_once(self, launch: Launch) -> Terminated | None:
        """Starts the process and supervises it until it exits or is killed; None when
        it could not start because the agent or the pod is going away."""
        started_at = _now()
        with self._lock:
            if self._stopping:
                return None
            try:
                process = self._registry.spawn(
                    launch.argv,
                    launch.env,
                    launch.cwd,
                    self._context.log_path(self.container_name),
                    {
                        "namespace": self._context.namespace,
                        "pod": self._context.pod_name,
                        "pod_uid": self._context.pod_uid,
                        "container": self.container_name,
                    },
                )
            except RegistryClosed:
                return None
            except OSError as error:
                return Terminated(
                    exit_code=restart.START_ERROR_EXIT_CODE,
                    reason="StartError",
                    message=f"{launch.argv[0]}: {error}",
                    started_at=started_at,
                    finished_at=_now(),
                )
            if self._has_run:
                self._restart_count += 1
            self._has_run = True
            self._process = process
            self._container_id = f"local://{process.pid}"
            self._state = Running(started_at)
            self._ready = False
            self._startup_done = False
        log.info("container %s started: pid %d: %s", self.name, process.pid, launch.argv)
        self._notify()
        kill_message = self._watch_process(process, launch)
        returncode = process.wait()
        self._registry.release(process)
        exit_code, signum = restart.exit_code_of(returncode)
        with self._lock:
            self._process = None
            container_id = self._container_id
        return Terminated(
            exit_code=exit_code,
            reason=restart.termination_reason(exit_code),
            message=kill_message,
            started_at=started_at,
            finished_at=_now(),
            container_id=container_id,
            signal=signum,
        )

    def _watch_process(self, process: subprocess.Popen[bytes], launch: Launch) -> str:
        """Polls for exit and runs the probes; kills the process when its liveness or
        startup probe gives up. Returns why it was killed ("" if it exited by itself)."""
        specs = _parse_probes(self.container)
        context = ProbeContext(self._context.pod_ip, self.container, launch.env, launch.cwd)
        started_mono = time.monotonic()
        trackers = {role: probes.ProbeTracker.initial(role) for role in specs}
        due = {role: probes.first_probe_at(started_mono, spec) for role, spec in specs.items()}
        if "startup" not in specs:
            self._set(started=True, ready="readiness" not in specs)
        while process.poll() is None:
            if self._is_stopping():
                self._wake.wait(EXIT_POLL_INTERVAL_SECONDS)
                continue
            started = self.snapshot().started
            active = [r for r in specs if (r == "startup") != started]
            for role in active:
                if time.monotonic() < due[role]:
                    continue
                spec = specs[role]
                probe_started = time.monotonic()
                outcome = run_probe(spec, context)
                due[role] = probes.next_probe_at(probe_started, spec)
                before, trackers[role] = (
                    trackers[role],
                    trackers[role].observe(outcome.success, spec),
                )
                if not outcome.success:
                    log.info(
                        "container %s: %s probe failed (%d/%d): %s",
                        self.name,
                        role,
                        trackers[role].failures,
                        spec.failure_threshold,
                        outcome.message,
                    )
                verdict = self._apply_probe(role, before, trackers[role], spec, outcome.message)
                if verdict:
                    self._kill(process, spec)
                    return verdict
            next_due = min((due[r] for r in active), default=time.monotonic() + 1.0)
            wait = min(max(next_due - time.monotonic(), 0.0), EXIT_POLL_INTERVAL_SECONDS)
            self._wake.wait(wait)
        return ""

    def _apply_probe(
        self,
        role: str,
        before: probes.ProbeTracker,
        after: probes.ProbeTracker,
        spec: probes.ProbeSpec,
        message: str,
    ) -> str:
        """Acts on a probe verdict; returns a kill reason when the container must die."""
        if role == "readiness":
            if before.result != after.result:
                log.info("container %s: ready=%s", self.name, after.result)
                self._set(ready=after.result)
            return ""
        if role == "startup":
            if after.result:
                log.info("container %s: startup probe succeeded", self.name)
                self._set(started=True, ready="readiness" not in _parse_probes(self.container))
                return ""
            if after.failures >= spec.failure_threshold:
                return f"Startup probe failed: {message}"
            return ""
        if not after.result:
            return f"Liveness probe failed: {message}"
        return ""

    def _kill(self, process: subprocess.Popen[bytes], spec: probes.ProbeSpec) -> None:
        grace = (
            spec.termination_grace_period_seconds
            if spec.termination_grace_period_seconds is not None
            else self._context.termination_grace_seconds
        )
        log.info(
            "container %s failed its probe: SIGTERM, %gs grace, then SIGKILL", self.name, grace
        )
        self._set(ready=False)
        terminate_groups([process], grace)

    def _prepare(self) -> Launch:
        pod = self._pod_source()
        sources = self._fetch_sources(env.referenced_sources(self.container))
        container_env = env.resolve_container_env(
            pod,
            self.container,
            sources,
            env.PodAddresses(self._context.pod_ip, self._context.host_ip),
            self._context.node,
        )
        spec = pod.get("spec") or {}
        base = {
            **self._context.base_env,
            "HOSTNAME": spec.get("hostname") or self._context.pod_name,
        }
        environment = env.process_env(base, container_env)
        argv = env.expand_command(self.container, container_env)
        if argv is None:
            raise LaunchError("no command")
        if "/" not in argv[0]:
            found = shutil.which(argv[0], path=environment.get("PATH", ""))
            if found is None:
                raise LaunchError(f'exec: "{argv[0]}": executable file not found in $PATH')
            argv[0] = found
        working_dir = self.container.get("workingDir")
        cwd = working_dir if working_dir and os.path.isdir(working_dir) else None
        return Launch(argv=argv, env=environment, cwd=cwd)

    def _fetch_sources(self, refs: set[env.SourceRef]) -> env.EnvSources:
        secrets: dict[str, Mapping[str, str] | None] = {}
        config_maps: dict[str, Mapping[str, str] | None] = {}
        namespace = self._context.namespace
        for ref in refs:
            plural = "secrets" if ref.kind == "secret" else "configmaps"
            try:
                obj = self._api.get(f"/api/v1/namespaces/{namespace}/{plural}/{ref.name}")
            except ApiError as error:
                if error.status == 403:
                    raise env.ContainerConfigError(
                        f"the node may not read {ref.kind} {ref.name!r}: {error}"
                    ) from error
                if error.status != 404:
                    raise
                obj = None
            if ref.kind == "secret":
                secrets[ref.name] = env.secret_values(obj) if obj is not None else None
            else:
                config_maps[ref.name] = env.config_map_values(obj) if obj is not None else None
        return env.EnvSources(secrets=secrets, config_maps=config_maps)

    # -- small helpers -----------------------------------------------------------------------

    def _is_stopping(self) -> bool:
        with self._lock:
            return self._stopping

    _UNSET: Any = object()

    def _set(
        self,
        *,
        state: ContainerState | None = None,
        last_state: Any = _UNSET,
        ready: bool | None = None,
        started: bool | None = None,
    ) -> None:
        with self._lock:
            if state is not None:
                self._state = state
            if last_state is not ContainerRunner._UNSET:
                self._last_state = last_state
            if ready is not None:
                self._ready = ready
            if started is not None:
                self._startup_done = started
        self._notify()


_PROBE_FIELDS: tuple[tuple[probes.ProbeRole, str], ...] = (
    ("startup", "startupProbe"),
    ("liveness", "livenessProbe"),
    ("readiness", "readinessProbe"),
)


def _parse_probes(
    container: Mapping[str, Any],
) -> dict[probes.ProbeRole, probes.ProbeSpec]:
    found: dict[probes.ProbeRole, probes.ProbeSpec] = {}
    for role, key in _PROBE_FIELDS:
        if container.get(key):
            try:
                found[role] = probes.ProbeSpec.from_json(container[key])
            except probes.ProbeConfigError as error:
                log.warning(
                    "container %s: %s probe ignored: %s", container.get("name"), role, error
                )
    return found

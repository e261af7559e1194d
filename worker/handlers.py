"""Running one job: a decorated Python function, or a program run per job.

Both kinds answer the same three questions for the job loop: do you know this
task, how long may it run, and what does running it return (or raise).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import signal
from collections.abc import Mapping
from typing import Any, Protocol

from workerfleet.worker import tasks, tracing
from workerfleet.worker.config import COMMAND_HANDLER_PREFIX

STDERR_TAIL_CHARS = 4000
STDERR_TAIL_LINES = 40
COMMAND_TERM_GRACE_SECONDS = 5.0
# The program gets its own environment minus the worker's database credentials.
COMMAND_ENV_WITHHELD = ("WORKERFLEET_DSN",)


class UnknownTaskError(LookupError):
    """No handler for the job's task; retrying cannot fix that."""


class CommandFailedError(RuntimeError):
    """The per-job program exited non-zero; the message carries its stderr tail."""


class Handler(Protocol):
    description: str

    def knows(self, task: str) -> bool: ...

    def timeout_for(self, task: str) -> float | None: ...

    async def run(self, context: tasks.JobContext, payload: Any) -> Any: ...


class ModuleHandler:
    """Tasks declared with @task in a Python module; sync ones run in a thread."""

    def __init__(self, registry: tasks.TaskRegistry, description: str) -> None:
        self.registry = registry
        self.description = description

    def knows(self, task: str) -> bool:
        return task in self.registry

    def timeout_for(self, task: str) -> float | None:
        definition = self.registry.get(task)
        return definition.timeout_seconds if definition else None

    async def run(self, context: tasks.JobContext, payload: Any) -> Any:
        definition = self.registry.get(context.task)
        if definition is None:
            raise UnknownTaskError(unknown_task_message(context.task, self.registry))
        if definition.is_async:
            return await definition.function(context, payload)
        # A thread cannot be interrupted: on timeout the job is failed at once and
        # the thread finishes in the background, holding one executor slot.
        return await asyncio.to_thread(definition.function, context, payload)


class CommandHandler:
    """Runs ``argv`` once per job: payload JSON on stdin, result from stdout."""

    def __init__(self, argv: list[str], environ: Mapping[str, str] | None = None) -> None:
        self.argv = argv
        self.description = COMMAND_HANDLER_PREFIX + shlex.join(argv)
        base = dict(os.environ if environ is None else environ)
        self.base_env = {k: v for k, v in base.items() if k not in COMMAND_ENV_WITHHELD}

    def knows(self, task: str) -> bool:
        return True  # the program decides (it sees the task in WORKERFLEET_JOB_TASK)

    def timeout_for(self, task: str) -> float | None:
        return None

    async def run(self, context: tasks.JobContext, payload: Any) -> Any:
        process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=command_environment(self.base_env, context),
            start_new_session=True,  # so a timeout can stop the program and its children
        )
        try:
            stdout, stderr = await process.communicate(json.dumps(payload).encode())
        except BaseException:
            await _stop_process_group(process)
            raise
        if process.returncode != 0:
            raise CommandFailedError(command_failure_message(process.returncode, stderr))
        return parse_command_output(stdout)


def command_environment(base: Mapping[str, str], context: tasks.JobContext) -> dict[str, str]:
    return {
        **base,
        "WORKERFLEET_JOB_ID": str(context.job_id),
        "WORKERFLEET_JOB_ATTEMPT": str(context.attempt),
        "WORKERFLEET_JOB_MAX_ATTEMPTS": str(context.max_attempts),
        "WORKERFLEET_JOB_QUEUE": context.queue,
        "WORKERFLEET_JOB_TASK": context.task,
        "WORKERFLEET_WORKER_ID": context.worker_id,
        **tracing.command_environment(),  # TRACEPARENT: the attempt's span, when traced
    }


async def _stop_process_group(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            await asyncio.wait_for(
                asyncio.shield(process.wait()), timeout=COMMAND_TERM_GRACE_SECONDS
            )
            return
        except TimeoutError:
            continue


def parse_command_output(stdout: bytes) -> Any:
    """stdout as JSON when it parses, else as text; nothing -> None."""
    text = stdout.decode("utf-8", errors="replace").strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def stderr_tail(stderr: bytes) -> str:
    text = stderr.decode("utf-8", errors="replace").rstrip()
    lines = text.splitlines()[-STDERR_TAIL_LINES:]
    return "\n".join(lines)[-STDERR_TAIL_CHARS:]


def command_failure_message(returncode: int | None, stderr: bytes) -> str:
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        head = f"command killed by signal {name}"
    else:
        head = f"command exited with status {returncode}"
    tail = stderr_tail(stderr)
    return f"{head}: {tail}" if tail else f"{head} (no stderr)"


def unknown_task_message(task: str, known: Mapping[str, Any]) -> str:
    names = ", ".join(sorted(known)) or "none"
    return f"unknown task {task!r}: the handlers module declares no such task (known: {names})"


def load_handler(spec: str) -> Handler:
    """``command:<program args>`` or a module path; HandlerLoadError says why not."""
    if spec.startswith(COMMAND_HANDLER_PREFIX):
        try:
            argv = shlex.split(spec[len(COMMAND_HANDLER_PREFIX) :])
        except ValueError as exc:
            raise tasks.HandlerLoadError(f"cannot parse command {spec!r}: {exc}") from None
        if not argv:
            raise tasks.HandlerLoadError("'command:' must be followed by the program to run")
        return CommandHandler(argv)
    return ModuleHandler(tasks.load_registry(spec), spec)

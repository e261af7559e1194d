"""Declaring task functions and finding them in a handlers module.

A handlers module is plain Python::

    from workerfleet.worker.tasks import JobContext, task

    @task(timeout="2m")
    async def send_email(ctx: JobContext, payload: dict) -> dict: ...

    @task(name="resize")
    def resize_image(ctx: JobContext, payload: dict) -> None: ...   # runs in a thread

    @task(schedule="*/5 * * * *")                # enqueued every five minutes, once
    async def sweep(ctx: JobContext, payload: None) -> None: ...

The decorator only marks the function; ``registry_from_module`` collects the
marks, so importing a module twice or from tests never registers anything twice
in some global table.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar

from workerfleet.durations import DurationError, parse_duration
from workerfleet.worker import cron as crontab
from workerfleet.worker import models

TASK_ATTRIBUTE = "__workerfleet_task__"

TaskFunction = Callable[..., Any]
F = TypeVar("F", bound=TaskFunction)


class TaskDefinitionError(ValueError):
    """A task declared in a way that cannot work (bad timeout, duplicate name...)."""


class PermanentError(Exception):
    """Raise from a task to dead-letter the job at once: retrying cannot help."""


class HandlerLoadError(ImportError):
    """The handlers module cannot be imported or declares no task."""


@dataclass(frozen=True)
class JobContext:
    """What a task function knows about the job it runs."""

    job_id: int
    attempt: int
    max_attempts: int
    queue: str
    task: str
    worker_id: str
    logger: logging.LoggerAdapter[logging.Logger]

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts


@dataclass(frozen=True)
class Schedule:
    """When a task runs by itself: ``@task(schedule=Schedule("0 9 * * MON-FRI", ...))``.

    ``@task(schedule="*/5 * * * *")`` is the short form (UTC, no payload). The
    worker that holds its pool's scheduler lock enqueues each run once, on the
    worker's first queue (see ``workerfleet.worker.scheduler``).
    ``starting_deadline`` (seconds or a duration such as "5m") is how late a
    missed run may still be enqueued; unset, the latest missed run always is.
    """

    cron: str
    time_zone: str = crontab.DEFAULT_TIME_ZONE
    payload: Any = None
    priority: int = 0
    max_attempts: int | None = None
    starting_deadline: float | str | None = None

    @property
    def starting_deadline_seconds(self) -> float | None:
        if self.starting_deadline is None:
            return None
        return parse_duration(self.starting_deadline)


@dataclass(frozen=True)
class TaskDefinition:
    name: str
    function: TaskFunction
    timeout_seconds: float | None
    is_async: bool
    schedule: Schedule | None = None


def _checked_schedule(name: str | None, schedule: str | Schedule | None) -> Schedule | None:
    if schedule is None:
        return None
    declared = Schedule(schedule) if isinstance(schedule, str) else schedule
    try:
        crontab.parse(declared.cron, declared.time_zone)
        deadline = declared.starting_deadline_seconds
        if deadline is not None:
            models.validate_starting_deadline(deadline)
    except (crontab.CronError, DurationError, models.InvalidJobError) as exc:
        raise TaskDefinitionError(f"task {name!r}: schedule: {exc}") from None
    return declared


def task(
    name: str | None = None,
    *,
    timeout: str | float | None = None,
    schedule: str | Schedule | None = None,
) -> Callable[[F], F]:
    """Mark ``function(ctx, payload)`` as the handler of task ``name`` (default: its name).

    ``timeout`` (a duration such as "30s" or seconds) overrides WORKERFLEET_JOB_TIMEOUT.
    ``schedule`` (a cron expression or a :class:`Schedule`) also enqueues the task
    periodically, from the worker that holds its pool's scheduler lock.
    """
    try:
        timeout_seconds = None if timeout is None else parse_duration(timeout)
    except DurationError as exc:
        raise TaskDefinitionError(f"task {name!r}: timeout: {exc}") from None
    if timeout_seconds is not None and timeout_seconds <= 0:
        raise TaskDefinitionError(f"task {name!r}: timeout must be positive")
    declared = _checked_schedule(name, schedule)

    def mark(function: F) -> F:
        definition = TaskDefinition(
            name=name or function.__name__,
            function=function,
            timeout_seconds=timeout_seconds,
            is_async=inspect.iscoroutinefunction(function),
            schedule=declared,
        )
        setattr(function, TASK_ATTRIBUTE, definition)
        return function

    return mark


class TaskRegistry(Mapping[str, TaskDefinition]):
    """Task name -> definition; read-only once built."""

    def __init__(self, definitions: list[TaskDefinition]) -> None:
        by_name: dict[str, TaskDefinition] = {}
        for definition in definitions:
            existing = by_name.get(definition.name)
            if existing is not None and existing.function is not definition.function:
                raise TaskDefinitionError(
                    f"task name {definition.name!r} is declared twice "
                    f"({existing.function.__qualname__} and {definition.function.__qualname__})"
                )
            by_name[definition.name] = definition
        self._by_name = by_name

    def __getitem__(self, name: str) -> TaskDefinition:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._by_name))

    def __len__(self) -> int:
        return len(self._by_name)


def registry_from_module(module: ModuleType) -> TaskRegistry:
    definitions = [
        definition
        for value in vars(module).values()
        if isinstance(definition := getattr(value, TASK_ATTRIBUTE, None), TaskDefinition)
    ]
    return TaskRegistry(definitions)


def load_registry(module_path: str) -> TaskRegistry:
    """Import ``module_path`` and collect its tasks; HandlerLoadError says why not."""
    try:
        module = importlib.import_module(module_path)
    except Exception as exc:
        raise HandlerLoadError(
            f"cannot import handlers module {module_path!r}: {type(exc).__name__}: {exc}"
        ) from exc
    registry = registry_from_module(module)
    if not registry:
        raise HandlerLoadError(
            f"handlers module {module_path!r} declares no task: decorate functions with "
            "@workerfleet.worker.tasks.task"
        )
    return registry

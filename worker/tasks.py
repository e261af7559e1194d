"""Declaring task functions and finding them in a handlers module.

A handlers module is plain Python::

    from workerfleet.worker.tasks import JobContext, task

    @task(timeout="2m")
    async def send_email(ctx: JobContext, payload: dict) -> dict: ...

    @task(name="resize")
    def resize_image(ctx: JobContext, payload: dict) -> None: ...   # runs in a thread

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
class TaskDefinition:
    name: str
    function: TaskFunction
    timeout_seconds: float | None
    is_async: bool


def task(name: str | None = None, *, timeout: str | float | None = None) -> Callable[[F], F]:
    """Mark ``function(ctx, payload)`` as the handler of task ``name`` (default: its name).

    ``timeout`` (a duration such as "30s" or seconds) overrides WORKERFLEET_JOB_TIMEOUT.
    """
    try:
        timeout_seconds = None if timeout is None else parse_duration(timeout)
    except DurationError as exc:
        raise TaskDefinitionError(f"task {name!r}: timeout: {exc}") from None
    if timeout_seconds is not None and timeout_seconds <= 0:
        raise TaskDefinitionError(f"task {name!r}: timeout must be positive")

    def mark(function: F) -> F:
        definition = TaskDefinition(
            name=name or function.__name__,
            function=function,
            timeout_seconds=timeout_seconds,
            is_async=inspect.iscoroutinefunction(function),
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

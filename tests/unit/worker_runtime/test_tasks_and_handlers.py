from __future__ import annotations

import asyncio
import logging
import threading
import types
from typing import Any

import pytest

from workerfleet.worker import demo_handlers, handlers, tasks
from workerfleet.worker.tasks import JobContext, task


def _context(task_name: str, attempt: int = 1) -> JobContext:
    return JobContext(
        job_id=7,
        attempt=attempt,
        max_attempts=3,
        queue="q",
        task=task_name,
        worker_id="w-1",
        logger=logging.LoggerAdapter(logging.getLogger("test"), {}),
    )


def _module(**members: Any) -> types.ModuleType:
    module = types.ModuleType("fake_handlers")
    for name, value in members.items():
        setattr(module, name, value)
    return module


def test_decorator_marks_functions_and_the_registry_collects_them() -> None:
    @task(timeout="2m")
    async def send(ctx: JobContext, payload: Any) -> str:
        return "sent"

    @task(name="resize")
    def resize_image(ctx: JobContext, payload: Any) -> None:
        return None

    def helper() -> None:
        return None

    registry = tasks.registry_from_module(_module(send=send, resize_image=resize_image, h=helper))
    assert sorted(registry) == ["resize", "send"]
    assert registry["send"].timeout_seconds == 120.0
    assert registry["send"].is_async is True
    assert registry["resize"].is_async is False
    assert registry["resize"].timeout_seconds is None


def test_two_functions_claiming_one_name_are_refused() -> None:
    @task(name="same")
    async def first(ctx: JobContext, payload: Any) -> None: ...

    @task(name="same")
    async def second(ctx: JobContext, payload: Any) -> None: ...

    with pytest.raises(tasks.TaskDefinitionError, match="'same' is declared twice"):
        tasks.registry_from_module(_module(first=first, second=second))


def test_bad_timeouts_are_refused_at_declaration() -> None:
    with pytest.raises(tasks.TaskDefinitionError, match="timeout"):
        task(timeout="soon")
    with pytest.raises(tasks.TaskDefinitionError, match="positive"):
        task(timeout=0)


def test_load_registry_explains_import_failures_and_empty_modules() -> None:
    with pytest.raises(tasks.HandlerLoadError, match="cannot import handlers module"):
        tasks.load_registry("workerfleet.no_such_module")
    with pytest.raises(tasks.HandlerLoadError, match="declares no task"):
        tasks.load_registry("workerfleet.durations")


def test_demo_handlers_declare_the_documented_tasks() -> None:
    registry = tasks.load_registry("workerfleet.worker.demo_handlers")
    assert {"sleep", "echo", "fail", "cpu", "noop"} <= set(registry)


async def test_module_handler_runs_async_tasks_inline_and_sync_tasks_in_a_thread() -> None:
    seen_threads: list[str] = []

    @task()
    async def add(ctx: JobContext, payload: Any) -> int:
        return int(payload["a"]) + int(payload["b"])

    @task()
    def where(ctx: JobContext, payload: Any) -> str:
        seen_threads.append(threading.current_thread().name)
        return f"{ctx.task}@{ctx.attempt}"

    handler = handlers.ModuleHandler(
        tasks.registry_from_module(_module(add=add, where=where)), "fake"
    )
    assert await handler.run(_context("add"), {"a": 2, "b": 3}) == 5
    assert await handler.run(_context("where", attempt=2), None) == "where@2"
    assert seen_threads
    assert seen_threads[0] != threading.main_thread().name
    assert handler.knows("add")
    assert not handler.knows("nope")
    with pytest.raises(handlers.UnknownTaskError, match=r"unknown task 'nope'.*known: add, where"):
        await handler.run(_context("nope"), None)


async def test_demo_tasks_validate_their_payloads() -> None:
    handler = handlers.ModuleHandler(tasks.registry_from_module(demo_handlers), "demo")
    assert await handler.run(_context("echo"), {"x": [1, 2]}) == {"x": [1, 2]}
    assert await handler.run(_context("sleep"), {"seconds": 0}) == {"slept": 0.0}
    assert (await handler.run(_context("cpu"), {"iterations": 10}))["iterations"] == 10
    assert await handler.run(_context("fail"), {"rate": 0}) == {"survived": "attempt 1"}
    with pytest.raises(RuntimeError, match="boom"):
        await handler.run(_context("fail"), {"rate": 1, "message": "boom"})
    with pytest.raises(ValueError, match="'seconds' must be a non-negative number"):
        await handler.run(_context("sleep"), {"seconds": "long"})
    with pytest.raises(ValueError, match="between 0 and 1"):
        await handler.run(_context("fail"), {"rate": 3})


def test_command_output_is_json_when_it_parses_else_text() -> None:
    assert handlers.parse_command_output(b'{"ok": true}\n') == {"ok": True}
    assert handlers.parse_command_output(b"42") == 42
    assert handlers.parse_command_output(b"done, 3 rows\n") == "done, 3 rows"
    assert handlers.parse_command_output(b"  \n") is None


def test_command_failure_message_keeps_the_stderr_tail() -> None:
    stderr = "".join(f"line {n}\n" for n in range(100)).encode()
    message = handlers.command_failure_message(2, stderr)
    assert message.startswith("command exited with status 2: ")
    assert "line 99" in message
    assert "line 10\n" not in message  # only the tail
    assert (
        handlers.command_failure_message(-9, b"") == "command killed by signal SIGKILL (no stderr)"
    )


def test_load_handler_parses_commands_and_withholds_the_dsn() -> None:
    handler = handlers.load_handler("command:python3 -m acme.job --flag 'two words'")
    assert isinstance(handler, handlers.CommandHandler)
    assert handler.argv == ["python3", "-m", "acme.job", "--flag", "two words"]
    assert handler.knows("anything")
    command = handlers.CommandHandler(["x"], {"WORKERFLEET_DSN": "postgresql://a:b@c/d", "A": "1"})
    env = handlers.command_environment(command.base_env, _context("resize"))
    assert "WORKERFLEET_DSN" not in env
    assert env["A"] == "1"
    assert env["WORKERFLEET_JOB_TASK"] == "resize"
    assert env["WORKERFLEET_JOB_ID"] == "7"
    with pytest.raises(tasks.HandlerLoadError, match="cannot parse command"):
        handlers.load_handler("command:echo 'unterminated")


def test_job_context_knows_its_last_attempt() -> None:
    assert not _context("t", attempt=2).is_last_attempt
    assert _context("t", attempt=3).is_last_attempt


async def test_sync_tasks_do_not_block_the_event_loop() -> None:
    event_loop = asyncio.get_running_loop()
    entered = asyncio.Event()
    release = threading.Event()

    @task()
    def blocker(ctx: JobContext, payload: Any) -> str:
        event_loop.call_soon_threadsafe(entered.set)
        return "released" if release.wait(60) else "never released"

    handler = handlers.ModuleHandler(tasks.registry_from_module(_module(b=blocker)), "fake")
    running = asyncio.create_task(handler.run(_context("blocker"), None))
    # The loop keeps running this coroutine while the task's thread blocks.
    await entered.wait()
    assert not running.done()
    release.set()
    assert await running == "released"

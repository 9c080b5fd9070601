"""Processors and built-in kinds: the registry, ``call`` and ``command`` (real subprocesses),
the pure pieces (outcome classification, memory pressure)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import JsonValue

from tests.runtime_worker import job_registry, job_task, runtime_config, task_state_is, wait_until
from worker import (
    PermanentError,
    ProcessorRegistry,
    Retry,
    Task,
    TaskContext,
    TaskItem,
    TaskState,
    Worker,
    WorkerQueue,
    processor,
)
from worker.builtins import CallRequest, CommandRequest
from worker.runtime.memory import MemoryGovernor, MemoryInfoError, adjust, used_fraction
from worker.runtime.outcomes import judge
from worker.runtime.processors import registry as default_registry
from worker.storage.sqlite.connection import sqlite_path

pytestmark = pytest.mark.timeout(30)


# -- the registry --------------------------------------------------------------------------


async def handle_echo(item: TaskItem, ctx: TaskContext) -> JsonValue:
    return "echo"


def test_registry_by_decorator_dotted_path_and_module_import() -> None:
    registry = ProcessorRegistry(builtins=False)

    @registry.processor("first")
    async def first(item: TaskItem, ctx: TaskContext) -> JsonValue:
        return 1

    registry.add("second", "tests.test_processors:handle_echo")
    assert registry.get("first") is first
    assert registry.get("second") is handle_echo
    assert registry.kinds() == ["first", "second"]
    with pytest.raises(ValueError, match="already has a processor"):
        registry.add("first", handle_echo)
    registry.add("first", handle_echo, replace=True)
    with pytest.raises(PermanentError, match="no processor for request kind 'third'"):
        registry.get("third")
    with pytest.raises(ModuleNotFoundError):
        registry.add("fourth", "tests.no_such_module:handler")
    with pytest.raises(AttributeError, match="no_such_function"):
        registry.add("fourth", "tests.test_processors:no_such_function")


def test_load_modules_imports_modules_whose_decorators_register() -> None:
    assert "module_job" not in default_registry
    sys.modules.pop("tests.processor_plugin", None)
    plugin = Path(__file__).with_name("processor_plugin.py")
    plugin.write_text(
        "from worker import processor\n\n\n"
        "@processor('module_job')\n"
        "async def module_job(item, ctx):\n"
        "    return 'from a module'\n"
    )
    try:
        default_registry.load_modules(["tests.processor_plugin"])
        assert "module_job" in default_registry
    finally:
        plugin.unlink()
        sys.modules.pop("tests.processor_plugin", None)


def test_the_default_registry_has_the_builtin_kinds_and_the_decorator_fills_it() -> None:
    assert {"call", "command"} <= set(default_registry.kinds())

    @processor("decorated_job")
    async def decorated(item: TaskItem, ctx: TaskContext) -> JsonValue:
        return None

    assert default_registry.get("decorated_job") is decorated


# -- outcomes ------------------------------------------------------------------------------


def test_outcome_classification() -> None:
    assert judge(Retry(delay=2.5)).verdict == "retry"
    assert judge(Retry(delay=2.5)).delay_s == 2.5
    assert judge(Retry()).delay_s is None
    assert judge(PermanentError("bad input")).verdict == "discard"
    assert judge(FileNotFoundError("x.wav")).verdict == "discard"
    assert judge(RuntimeError("flaky")) == judge(RuntimeError("flaky"))
    assert judge(RuntimeError("flaky")).verdict == "retry"
    assert judge(RuntimeError("flaky")).error == "RuntimeError: flaky"
    with pytest.raises(ValueError, match=">= 0"):
        Retry(delay=-1)


# -- memory pressure -----------------------------------------------------------------------

MEMINFO = """MemTotal:       16000000 kB
MemFree:          500000 kB
MemAvailable:    {available} kB
Buffers:          100000 kB
"""


def test_used_fraction_reads_meminfo_text() -> None:
    assert used_fraction(MEMINFO.format(available=4_000_000)) == pytest.approx(0.75)
    assert used_fraction(MEMINFO.format(available=16_000_000)) == 0.0
    with pytest.raises(MemoryInfoError, match="MemAvailable"):
        used_fraction("MemTotal: 100 kB\n")


def test_adjust_halves_above_the_threshold_and_recovers_below_it() -> None:
    assert adjust(8, 8, 0.90, 0.85) == 4
    assert adjust(1, 8, 0.99, 0.85) == 1
    assert adjust(4, 8, 0.83, 0.85) == 4  # within the hysteresis band: stay
    assert adjust(4, 8, 0.50, 0.85) == 8
    assert adjust(8, 8, 0.50, 0.85) == 8


def test_memory_governor_lowers_and_raises_concurrency_and_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    readings = iter([0.95, 0.95, 0.95, 0.2, 0.2])
    now = [0.0]

    def read() -> str:
        return MEMINFO.format(available=int(16_000_000 * (1 - next(readings))))

    governor = MemoryGovernor(8, 0.85, read=read, check_interval_s=1.0, clock=lambda: now[0])
    limits = []
    with caplog.at_level(logging.WARNING, logger="worker.runtime.memory"):
        for _ in range(5):
            limits.append(governor.current())
            limits.append(governor.current())  # within the interval: no new reading
            now[0] += 1.0
    assert limits == [4, 4, 2, 2, 1, 1, 2, 2, 4, 4]
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 3


def test_memory_governor_turns_itself_off_without_meminfo() -> None:
    def missing() -> str:
        raise MemoryInfoError("no /proc/meminfo here")

    governor = MemoryGovernor(4, 0.85, read=missing)
    assert governor.current() == 4
    assert governor.current() == 4
    assert MemoryGovernor(4, 1.0, read=missing).current() == 4


def test_sqlite_path_from_urls(tmp_path: Path) -> None:
    assert sqlite_path(f"sqlite+aiosqlite:///{tmp_path}/q.db") == tmp_path / "q.db"
    assert sqlite_path("sqlite+aiosqlite:///:memory:") is None
    assert sqlite_path("postgresql+asyncpg://u@h/db") is None


# -- call and command, through a worker ----------------------------------------------------


async def run_one(database_url: str, request: Any, **fields: Any) -> Task:
    settings = ("allow_commands", "call_allowed_modules")
    config_fields = {k: fields.pop(k) for k in list(fields) if k in settings}
    async with WorkerQueue(runtime_config(database_url, **config_fields)) as queue:
        task = Task(items=[TaskItem(request=request)], **fields)
        await queue.enqueue([task])
        async with asyncio.timeout(20):
            await Worker(queue, burst=True, handle_signals=False).run()
        return await queue.get_task(task.id)


async def test_call_runs_allowed_sync_and_async_callables(database_url: str) -> None:
    task = await run_one(
        database_url,
        CallRequest(target="math:pow", args=[2, 10]),
        call_allowed_modules=["math"],
    )
    assert task.state is TaskState.COMPLETED
    assert task.items[0].result == 1024.0
    task = await run_one(
        database_url,
        CallRequest(target="tests.runtime_worker:add", kwargs={"a": 1, "b": 2}),
        call_allowed_modules=["tests.runtime_worker"],
    )
    assert task.items[0].result == 3


async def test_call_refuses_a_module_not_allowed(database_url: str) -> None:
    task = await run_one(
        database_url,
        CallRequest(target="os:getcwd"),
        call_allowed_modules=["math"],
        max_attempts=3,
    )
    assert task.state is TaskState.DISCARDED
    assert task.attempt_count == 1
    assert "'os'" in (task.last_error or "")
    assert "QUEUE_CALL_ALLOWED_MODULES" in (task.last_error or "")


async def test_command_is_refused_unless_enabled(database_url: str) -> None:
    task = await run_one(database_url, CommandRequest(argv=["true"]), max_attempts=3)
    assert task.state is TaskState.DISCARDED
    assert task.attempt_count == 1
    assert "QUEUE_ALLOW_COMMANDS" in (task.last_error or "")


async def test_command_result_holds_exit_code_and_output_tails(
    database_url: str, tmp_path: Path
) -> None:
    script = "import os,sys; print('x' * 10000); print('cwd', os.getcwd(), os.environ['GREETING'])"
    task = await run_one(
        database_url,
        CommandRequest(argv=[sys.executable, "-c", script], cwd=str(tmp_path),
                       env={"GREETING": "hello"}),
        allow_commands=True,
    )  # fmt: skip
    assert task.state is TaskState.COMPLETED
    result = task.items[0].result
    assert isinstance(result, dict)
    assert result["exit_code"] == 0
    stdout = result["stdout_tail"]
    assert isinstance(stdout, str)
    assert len(stdout) <= 4096
    assert stdout.endswith(f"cwd {tmp_path} hello\n")
    assert result["stderr_tail"] == ""


async def test_a_non_zero_exit_is_a_retryable_failure_with_code_and_stderr(
    database_url: str,
) -> None:
    script = "import sys; sys.stderr.write('disk on fire'); sys.exit(3)"
    task = await run_one(
        database_url,
        CommandRequest(argv=[sys.executable, "-c", script]),
        allow_commands=True,
        max_attempts=2,
    )
    assert task.state is TaskState.DISCARDED
    assert task.attempt_count == 2  # retried once: a normal failure
    assert "exited with code 3" in task.errors[0].error
    assert "disk on fire" in task.errors[0].error


async def test_a_command_past_its_timeout_is_killed(database_url: str) -> None:
    started = time.monotonic()
    task = await run_one(
        database_url,
        CommandRequest(argv=["sleep", "30"], timeout_s=0.3),
        allow_commands=True,
        max_attempts=1,
    )
    assert time.monotonic() - started < 10
    assert task.state is TaskState.DISCARDED
    assert "timed out after 0.3 s" in (task.last_error or "")


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_cancelling_a_running_command_kills_its_process_group(
    database_url: str, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    config = runtime_config(database_url, allow_commands=True, default_visibility_timeout=1.0)
    async with WorkerQueue(config) as queue:
        request = CommandRequest(argv=["sh", "-c", f"echo $$ > {pidfile}; exec sleep 60"])
        task = Task(items=[TaskItem(request=request)])
        await queue.enqueue([task])
        worker = Worker(queue, handle_signals=False)
        job = asyncio.create_task(worker.run())
        try:

            async def wrote_pid() -> bool:
                return has_text(pidfile)

            await wait_until(wrote_pid, 10, "the command started")
            pid = int(pidfile.read_text())
            assert process_alive(pid)
            asked = time.monotonic()
            assert await queue.mark_as_cancelled(task.id) is TaskState.PROCESSING
            await wait_until(
                lambda: task_state_is(queue, task.id, TaskState.CANCELLED), 5, "cancelled"
            )
            assert time.monotonic() - asked < 3
            assert not process_alive(pid)
            done = await queue.get_task(task.id)
            assert done.last_error == "cancelled while running"
        finally:
            worker.request_stop()
            async with asyncio.timeout(10):
                await job
        assert worker.counts["cancelled"] == 1


def has_text(path: Path) -> bool:
    try:
        return path.read_text().strip() != ""
    except FileNotFoundError:
        return False


async def test_a_handler_three_times_its_lease_keeps_it_and_nobody_else_claims_it(
    database_url: str,
) -> None:
    async with (
        WorkerQueue(runtime_config(database_url, default_visibility_timeout=1.0)) as first,
        WorkerQueue(runtime_config(database_url, default_visibility_timeout=1.0)) as second,
    ):
        task = job_task(seconds=[3.0])
        await first.enqueue([task])
        owner = Worker(first, job_registry(), handle_signals=False)
        rival = Worker(second, job_registry(), handle_signals=False)
        stolen: list[str] = []
        rival.register_callback("task_started", lambda event: stolen.append(event.task.id))
        started = asyncio.Event()
        owner.register_callback("task_started", lambda event: started.set())
        owner_job = asyncio.create_task(owner.run())
        try:
            async with asyncio.timeout(5):
                await started.wait()
            rival_job = asyncio.create_task(rival.run())  # polls and sweeps all along
            try:
                await wait_until(
                    lambda: task_state_is(first, task.id, TaskState.COMPLETED), 10, "completed"
                )
            finally:
                rival.request_stop()
                async with asyncio.timeout(10):
                    await rival_job
        finally:
            owner.request_stop()
            async with asyncio.timeout(10):
                await owner_job
        done = await first.get_task(task.id)
        assert stolen == []
        assert done.attempt_count == 1
        assert done.expired_count == 0
        assert owner.counts["completed"] == 1


def test_a_worker_finds_handlers_through_entry_points() -> None:
    fresh = ProcessorRegistry(builtins=False)
    assert "tts" not in fresh
    handler = fresh.get("tts")  # never imported here: found through worker.runtime.processors
    assert handler.__module__ == "tts.processor"
    assert "tts" in fresh
    with pytest.raises(PermanentError, match="no processor for request kind 'nope'"):
        fresh.get("nope")
    closed = ProcessorRegistry(builtins=False, entry_points=False)
    with pytest.raises(PermanentError):
        closed.get("tts")

"""The worker says what happened to each task: one log line per retry, discard and cancel
(completions at DEBUG), with the task's id, kind, attempt and error as record fields."""

from __future__ import annotations

import asyncio
import logging

import pytest
from pydantic import JsonValue

from tests.runtime_worker import job_task, runtime_config
from worker import PermanentError, ProcessorRegistry, TaskContext, TaskItem, Worker, WorkerQueue


async def behave(item: TaskItem, ctx: TaskContext) -> JsonValue:
    name = getattr(item.request, "name", "")
    if name == "flaky":
        raise ValueError(f"flaked on attempt {ctx.task.attempt_count}")
    if name == "hopeless":
        raise PermanentError("cannot ever work")
    if name == "stopped":
        await ctx.queue.mark_as_cancelled(ctx.task.id)
        await asyncio.sleep(3600)
    return "ok"


def records_for(caplog: pytest.LogCaptureFixture, task_id: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "task_id", None) == task_id]


async def test_each_outcome_leaves_one_line(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="worker")
    registry = ProcessorRegistry()
    registry.add("job", behave)
    async with WorkerQueue(runtime_config(database_url)) as queue:
        tasks = {
            name: job_task(name=name, max_attempts=2)
            for name in ("flaky", "hopeless", "stopped", "fine")
        }
        await queue.enqueue(list(tasks.values()))
        async with asyncio.timeout(30):
            await Worker(queue, registry, burst=True, handle_signals=False).run()

    flaky = records_for(caplog, tasks["flaky"].id)
    retries = [r for r in flaky if getattr(r, "event", "") == "task_retry"]
    assert [(r.levelno, r.attempt, r.max_attempts, r.kind) for r in retries] == [  # type: ignore[attr-defined]
        (logging.WARNING, 1, 2, "job"),
        (logging.WARNING, 2, 2, "job"),
    ]
    assert retries[0].error == "ValueError: flaked on attempt 1"  # type: ignore[attr-defined]
    assert f"task {tasks['flaky'].id} (job) attempt 1/2 failed, retrying" in retries[0].message
    (used_up,) = [r for r in flaky if getattr(r, "event", "") == "task_discarded"]
    assert used_up.levelno == logging.ERROR
    assert "discarded after 2 attempt(s): ValueError: flaked on attempt 2" in used_up.message

    (hopeless,) = [
        r
        for r in records_for(caplog, tasks["hopeless"].id)
        if getattr(r, "event", "") == "task_discarded"
    ]
    assert hopeless.levelno == logging.ERROR
    assert hopeless.error == "PermanentError: cannot ever work"  # type: ignore[attr-defined]

    (stopped,) = [
        r
        for r in records_for(caplog, tasks["stopped"].id)
        if getattr(r, "event", "") == "task_cancelled"
    ]
    assert stopped.levelno == logging.WARNING
    assert stopped.attempt == 1  # type: ignore[attr-defined]

    (fine,) = records_for(caplog, tasks["fine"].id)
    assert (fine.levelno, fine.event) == (logging.DEBUG, "task_completed")  # type: ignore[attr-defined]

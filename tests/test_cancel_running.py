"""A cancel of a running task stops its handler within a second, with default settings.

Default settings mean an hour's visibility timeout, whose lease renewal comes only every 20
minutes: the cancel must reach the worker some other way. From the worker's own queue object
it is a poke; from anything else (another queue object, another process) the worker sees
the database change. Deadlines here are generous (a busy machine); the latency itself is
printed and measured in ``bench/bench_cancel.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from pydantic import JsonValue

from tests.runtime_worker import job_task
from worker import (
    ProcessorRegistry,
    QueueConfig,
    TaskContext,
    TaskItem,
    TaskState,
    Worker,
    WorkerQueue,
)
from worker.runtime.watch import STAT_INTERVAL_S, RunWatcher

#: Far above the second the promise is about, far below the 20 minutes it took before.
DEADLINE_S = 15.0


class Sleeper:
    """A handler that runs until cancelled, and says when it started and how it ended."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.interrupted = asyncio.Event()

    async def __call__(self, item: TaskItem, ctx: TaskContext) -> JsonValue:
        self.started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.interrupted.set()
            raise
        return "finished"


@asynccontextmanager
async def worker_running(queue: WorkerQueue, handler: Sleeper) -> AsyncIterator[Worker]:
    registry = ProcessorRegistry()
    registry.add("job", handler)
    worker = Worker(queue, registry, handle_signals=False)
    job = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.request_stop(force=True)
        async with asyncio.timeout(30):
            await job


async def cancelled_within(queue: WorkerQueue, task_id: str, started: float) -> float:
    while (await queue.get_task(task_id)).state is not TaskState.CANCELLED:
        assert time.monotonic() - started < DEADLINE_S, "the cancel did not reach the handler"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


@pytest.mark.parametrize("asker", ["same queue", "another queue object"])
async def test_a_cancel_interrupts_the_handler_with_default_settings(
    database_url: str, asker: str
) -> None:
    config = QueueConfig(database_url=database_url)
    assert config.default_visibility_timeout == 3600
    handler = Sleeper()
    async with WorkerQueue(config) as queue, WorkerQueue(config) as other:
        task = job_task()
        await queue.enqueue([task])
        async with worker_running(queue, handler) as worker:
            async with asyncio.timeout(DEADLINE_S):
                await handler.started.wait()
            started = time.monotonic()
            who = queue if asker == "same queue" else other
            assert await who.mark_as_cancelled(task.id) is TaskState.PROCESSING
            took = await cancelled_within(queue, task.id, started)
            print(f"cancel ({asker}) ended the task in {took * 1000:.0f} ms")
            assert handler.interrupted.is_set()
            assert worker.counts == {} or worker.counts.get("completed", 0) == 0
        ended = await queue.get_task(task.id)
        assert ended.state is TaskState.CANCELLED
        assert ended.last_error == "cancelled while running"


async def test_the_watch_sleeps_between_looks_while_a_task_runs(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a handler runs, the watch wakes every STAT_INTERVAL_S (50 ms), not in a tight
    loop: a spinning watch held the GIL from handlers' threads (Piper ran at half speed)."""
    wakes = 0
    sleep = RunWatcher._sleep

    async def counted(self: RunWatcher, seconds: float | None) -> None:
        nonlocal wakes
        wakes += 1
        await sleep(self, seconds)

    monkeypatch.setattr(RunWatcher, "_sleep", counted)
    handler = Sleeper()
    async with WorkerQueue(QueueConfig(database_url=database_url)) as queue:
        await queue.enqueue([job_task()])
        async with worker_running(queue, handler):
            async with asyncio.timeout(DEADLINE_S):
                await handler.started.wait()
            wakes = 0
            started = time.monotonic()
            await asyncio.sleep(1.0)
            took = time.monotonic() - started
    # About 20 in a second (fewer on a busy machine); a tight loop makes thousands.
    assert wakes < 4 * took / STAT_INTERVAL_S, wakes

"""Plain ``def`` handlers, which run in threads, are never run twice at once: a timeout, a
cancel or a shutdown interrupts the thread and waits for it before the task is retried,
cancelled or released; a thread Python cannot interrupt that outlives a forced stop leaves
its task to its lease. And a handler raising ``SystemExit`` or ``KeyboardInterrupt`` fails
its own task, not the worker. Both backends; real threads, real time."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest
from pydantic import BaseModel, JsonValue

from tests.runtime_worker import runtime_config, wait_until
from worker import (
    Interrupted,
    Jobs,
    ProcessorRegistry,
    RetryPolicy,
    Task,
    TaskContext,
    TaskItem,
    TaskState,
    Worker,
    WorkerQueue,
    register_request_kind,
)
from worker.runtime import loop as worker_loop_module

pytestmark = pytest.mark.timeout(90)


@register_request_kind("thread-job")
class ThreadJob(BaseModel):
    #: per attempt (the last repeats): "spin" (a Python loop until stopped), "block" (a wait
    #: Python cannot interrupt, until the test lets it go), "return", "exit", "interrupt"
    modes: list[str]


@dataclass
class Runs:
    """What the handler's threads did: (attempt, start, end) per run, by the monotonic clock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    runs: list[list[float | None]] = field(default_factory=list)
    endings: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    started: threading.Event = field(default_factory=threading.Event)

    def handler(self, item: TaskItem, ctx: TaskContext) -> JsonValue:
        request = item.request
        assert isinstance(request, ThreadJob)
        attempt = ctx.task.attempt_count
        mode = request.modes[min(attempt, len(request.modes)) - 1]
        with self.lock:
            run: list[float | None] = [attempt, time.monotonic(), None]
            self.runs.append(run)
        self.started.set()
        try:
            if mode == "spin":
                while True:
                    time.sleep(0.005)
            if mode == "block":
                self.release.wait()  # one C call: an interrupt lands only once it returns
            if mode == "exit":
                raise SystemExit(3)
            if mode == "interrupt":
                raise KeyboardInterrupt
            return f"attempt {attempt}"
        except Interrupted:
            self.endings.append(f"attempt {attempt} interrupted")
            raise
        finally:
            run[2] = time.monotonic()

    def overlaps(self) -> list[tuple[int, int]]:
        """Pairs of runs whose spans overlapped (an unfinished run lasts for ever)."""
        spans = [(s, e if e is not None else float("inf")) for _, s, e in self.runs if s]
        return [
            (i, j)
            for i, (s1, e1) in enumerate(spans)
            for j, (s2, e2) in enumerate(spans)
            if i < j and s2 < e1 and s1 < e2
        ]


@pytest.fixture
def runs() -> Iterator[Runs]:
    made = Runs()
    yield made
    made.release.set()  # no thread outlives its test


@pytest.fixture
async def queue(database_url: str) -> AsyncIterator[WorkerQueue]:
    async with WorkerQueue(runtime_config(database_url, shutdown_grace=0.2)) as opened:
        yield opened


def thread_job(*modes: str, **fields: object) -> Task:
    return Task(items=[TaskItem(request=ThreadJob(modes=list(modes)))], **fields)


async def start(queue: WorkerQueue, runs: Runs) -> tuple[Worker, asyncio.Task[dict[str, int]]]:
    registry = ProcessorRegistry()
    registry.add("thread-job", runs.handler)
    worker = Worker(queue, registry, handle_signals=False, concurrency=2)
    return worker, asyncio.create_task(worker.run())


async def state_is(queue: WorkerQueue, task_id: str, state: TaskState) -> bool:
    return (await queue.get_task(task_id)).state is state


async def test_a_timed_out_thread_is_interrupted_before_the_retry(
    queue: WorkerQueue, runs: Runs
) -> None:
    (task,) = [thread_job("spin", "return", timeout_s=0.3, max_attempts=3)]
    await queue.enqueue([task])
    worker, job = await start(queue, runs)
    try:
        await wait_until(lambda: state_is(queue, task.id, TaskState.COMPLETED), 30, "completed")
    finally:
        worker.request_stop(force=True)
        await job
    done = await queue.get_task(task.id)
    assert done.items[0].result == "attempt 2"
    assert "timed out after 0.3 s" in done.errors[0].error
    assert runs.endings == ["attempt 1 interrupted"]
    assert runs.overlaps() == []


async def test_a_thread_blocked_past_its_timeout_is_waited_for(
    queue: WorkerQueue, runs: Runs, caplog: pytest.LogCaptureFixture
) -> None:
    task = thread_job("block", "return", timeout_s=0.2, max_attempts=3)
    await queue.enqueue([task])
    worker, job = await start(queue, runs)
    try:
        await asyncio.to_thread(runs.started.wait, 20)
        await asyncio.sleep(1.5)  # far past the timeout: the retry must not start meanwhile
        assert len(runs.runs) == 1
        assert await state_is(queue, task.id, TaskState.PROCESSING)
        runs.release.set()
        await wait_until(lambda: state_is(queue, task.id, TaskState.COMPLETED), 30, "completed")
    finally:
        worker.request_stop(force=True)
        await job
    assert [run[0] for run in runs.runs] == [1, 2]
    assert runs.overlaps() == []
    assert "still running after 1.0 s" in caplog.text


async def test_a_cancel_interrupts_a_thread(queue: WorkerQueue, runs: Runs) -> None:
    task = thread_job("spin")
    await queue.enqueue([task])
    worker, job = await start(queue, runs)
    try:
        await asyncio.to_thread(runs.started.wait, 20)
        await queue.mark_as_cancelled(task.id)
        await wait_until(lambda: state_is(queue, task.id, TaskState.CANCELLED), 30, "cancelled")
    finally:
        worker.request_stop(force=True)
        await job
    assert runs.endings == ["attempt 1 interrupted"]
    assert all(end is not None for _, _, end in runs.runs)


async def test_a_shutdown_releases_a_thread_only_once_it_ends(
    queue: WorkerQueue, runs: Runs
) -> None:
    task = thread_job("spin")
    await queue.enqueue([task])
    worker, job = await start(queue, runs)
    await asyncio.to_thread(runs.started.wait, 20)
    worker.request_stop()
    async with asyncio.timeout(30):
        await job
    assert runs.endings == ["attempt 1 interrupted"]
    assert await state_is(queue, task.id, TaskState.PENDING)  # released: the attempt given back
    assert (await queue.get_task(task.id)).attempt_count == 0


async def test_a_thread_that_outlives_a_forced_stop_keeps_its_task(
    queue: WorkerQueue,
    runs: Runs,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(worker_loop_module, "UNWIND_S", 0.3)
    task = thread_job("block")
    await queue.enqueue([task])
    worker, job = await start(queue, runs)
    await asyncio.to_thread(runs.started.wait, 20)
    with caplog.at_level(logging.ERROR, logger="worker.runtime.loop"):
        worker.request_stop(force=True)
        async with asyncio.timeout(30):
            await job
    # Released, a second worker would run it beside the thread: it is left to its lease.
    assert await state_is(queue, task.id, TaskState.PROCESSING)
    assert "left to its lease" in caplog.text
    assert runs.runs[0][2] is None  # the thread still runs
    runs.release.set()


async def test_exit_and_interrupt_in_a_handler_fail_its_task_not_the_worker(
    queue: WorkerQueue, runs: Runs
) -> None:
    tasks = [
        thread_job("exit", max_attempts=1),
        thread_job("interrupt", max_attempts=1),
        thread_job("return"),
    ]
    await queue.enqueue(tasks)
    registry = ProcessorRegistry()
    registry.add("thread-job", runs.handler)
    worker = Worker(queue, registry, handle_signals=False, burst=True)
    async with asyncio.timeout(30):
        await worker.run()
    ended = [await queue.get_task(t.id) for t in tasks]
    assert [t.state for t in ended] == [
        TaskState.DISCARDED,
        TaskState.DISCARDED,
        TaskState.COMPLETED,
    ]
    assert ended[0].last_error == "SystemExit: 3"
    assert ended[1].last_error == "KeyboardInterrupt"


# -- task functions --------------------------------------------------------------------------

registry = ProcessorRegistry()
jobs = Jobs(registry=registry)
SPANS: list[tuple[int, float, float]] = []


@jobs.task(name="threads.slow", timeout_s=0.3, retry=RetryPolicy(kind="fixed", delay_s=0))
def slow(*, ctx: TaskContext) -> int:
    began = time.monotonic()
    try:
        if ctx.task.attempt_count == 1:
            while True:  # until interrupted
                time.sleep(0.005)
        return ctx.task.attempt_count
    finally:
        SPANS.append((ctx.task.attempt_count, began, time.monotonic()))


@jobs.task(name="threads.exits")
async def exits_async() -> None:
    raise SystemExit(4)


async def test_a_plain_task_function_is_interrupted_at_its_timeout(queue: WorkerQueue) -> None:
    SPANS.clear()
    jobs.bind(queue)
    try:
        task = await slow.defer()
        failing = await exits_async.configure(max_attempts=1).defer()
    finally:
        jobs.bind(None)
    worker = Worker(queue, registry, handle_signals=False, burst=True)
    async with asyncio.timeout(30):
        await worker.run()
    done = await queue.get_task(task.id)
    assert (done.state, done.items[0].result) == (TaskState.COMPLETED, 2)
    (first, second) = sorted(SPANS)
    assert first[2] <= second[1], "the retry started while the first attempt still ran"
    assert (await queue.get_task(failing.id)).last_error == "SystemExit: 4"

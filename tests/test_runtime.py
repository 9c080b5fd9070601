"""The runtime in one process, on real SQLite files and in real time: outcomes, retries,
timeouts, policies, progress and checkpoints, callbacks, burst mode and wake-ups."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pydantic import BaseModel, JsonValue

from tests.runtime_worker import JobRequest, job_task, runtime_config, task_state_is, wait_until
from worker import (
    PermanentError,
    ProcessorRegistry,
    Retry,
    RetryPolicy,
    Task,
    TaskContext,
    TaskEvent,
    TaskItem,
    TaskState,
    Worker,
    WorkerQueue,
    register_request_kind,
)
from worker.core.kinds import remove_request_kind

pytestmark = pytest.mark.timeout(30)

Handler = Callable[[TaskItem, TaskContext], Awaitable[JsonValue]]


def registry_with(handler: Handler) -> ProcessorRegistry:
    registry = ProcessorRegistry()
    registry.add("job", handler)
    return registry


@asynccontextmanager
async def open_queue(database_url: str, **fields: Any) -> AsyncIterator[WorkerQueue]:
    async with WorkerQueue(runtime_config(database_url, **fields)) as queue:
        yield queue


async def burst(queue: WorkerQueue, handler: Handler, **options: Any) -> dict[str, int]:
    worker = Worker(queue, registry_with(handler), burst=True, handle_signals=False, **options)
    async with asyncio.timeout(15):
        return await worker.run()


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    """Run ``worker`` in the background; stop it (and wait for it) on the way out."""
    job = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.request_stop()
        async with asyncio.timeout(10):
            await job


async def enqueue_one(queue: WorkerQueue, **fields: Any) -> Task:
    task = job_task(**fields)
    await queue.enqueue([task])
    return task


async def until_finished(queue: WorkerQueue, task_id: str, within: float = 10.0) -> Task:
    await wait_until(
        lambda: task_state_is(
            queue, task_id, TaskState.COMPLETED, TaskState.DISCARDED, TaskState.CANCELLED
        ),
        within,
        f"task {task_id} finished",
    )
    return await queue.get_task(task_id)


async def ok(item: TaskItem, ctx: TaskContext) -> JsonValue:
    return {"attempt": ctx.task.attempt_count, "index": ctx.index}


# -- outcomes ------------------------------------------------------------------------------


async def test_burst_runs_every_task_stores_results_and_leaves_the_registry(
    database_url: str,
) -> None:
    async with open_queue(database_url) as queue:
        tasks = [job_task(name=str(n)) for n in range(7)]
        await queue.enqueue(tasks)
        counts = await burst(queue, ok, concurrency=3)
        assert counts["completed"] == 7
        for task in await queue.list_tasks():
            assert task.state is TaskState.COMPLETED
            assert task.attempt_count == 1
            assert task.items[0].result == {"attempt": 1, "index": 0}
        assert await queue.live_workers() == []  # it said it stopped


async def test_burst_on_an_empty_queue_exits_at_once_and_leaves_future_tasks(
    database_url: str,
) -> None:
    async with open_queue(database_url, poll_interval=5.0) as queue:
        later = await enqueue_one(queue, schedule_at=time.time() + 60)
        started = time.monotonic()
        assert (await burst(queue, ok))["completed"] == 0
        assert time.monotonic() - started < 2.0
        assert (await queue.get_task(later.id)).state is TaskState.PENDING


async def test_a_failure_is_retried_by_the_sweep_and_then_completes(database_url: str) -> None:
    async def flaky(item: TaskItem, ctx: TaskContext) -> JsonValue:
        if ctx.task.attempt_count == 1:
            raise RuntimeError("boom")
        return "fine"

    async with open_queue(database_url) as queue:
        task = await enqueue_one(queue)
        counts = await burst(queue, flaky)
        done = await queue.get_task(task.id)
        assert done.state is TaskState.COMPLETED
        assert done.attempt_count == 2
        assert done.errors[0].error == "RuntimeError: boom"
        assert done.items[0].result == "fine"
        assert counts["retried"] == 1
        assert counts["completed"] == 1


async def test_failures_use_up_the_attempts_and_end_discarded(database_url: str) -> None:
    async def broken(item: TaskItem, ctx: TaskContext) -> JsonValue:
        raise ValueError(f"attempt {ctx.task.attempt_count}")

    async with open_queue(database_url) as queue:
        task = await enqueue_one(queue, max_attempts=2)
        await burst(queue, broken)
        done = await queue.get_task(task.id)
        assert done.state is TaskState.DISCARDED
        assert done.attempt_count == 2
        assert [e.error for e in done.errors] == ["ValueError: attempt 1", "ValueError: attempt 2"]


def _validation_error() -> Exception:
    try:
        JobRequest.model_validate({"seconds": "soon"})
    except Exception as exc:
        return exc
    raise AssertionError("expected a validation error")


@pytest.mark.parametrize(
    ("error", "name"),
    [
        (PermanentError("cannot ever work"), "PermanentError"),
        (FileNotFoundError("no such file: in.wav"), "FileNotFoundError"),
        (_validation_error(), "ValidationError"),
    ],
)
async def test_permanent_errors_discard_without_retrying(
    database_url: str, error: Exception, name: str
) -> None:
    async def doomed(item: TaskItem, ctx: TaskContext) -> JsonValue:
        raise error

    async with open_queue(database_url) as queue:
        task = await enqueue_one(queue, max_attempts=5)
        events: list[TaskEvent] = []
        worker = Worker(queue, registry_with(doomed), burst=True, handle_signals=False)
        worker.register_callback("task_failed", events.append)
        async with asyncio.timeout(10):
            await worker.run()
        done = await queue.get_task(task.id)
        assert done.state is TaskState.DISCARDED
        assert done.attempt_count == 1
        assert done.last_error is not None
        assert done.last_error.startswith(name)
        assert [e.task.id for e in events] == [task.id]


async def test_an_unknown_kind_is_discarded_with_a_clear_error(database_url: str) -> None:
    async with open_queue(database_url) as queue:
        task = await enqueue_one(queue)
        worker = Worker(queue, ProcessorRegistry(), burst=True, handle_signals=False)
        async with asyncio.timeout(10):
            await worker.run()
        done = await queue.get_task(task.id)
        assert done.state is TaskState.DISCARDED
        assert "no processor for request kind 'job'" in (done.last_error or "")


class _Plugin(BaseModel):
    text: str


async def test_a_kind_this_worker_cannot_load_counts_among_its_discards(
    database_url: str,
) -> None:
    # A worker started without the module that registers a kind discards its tasks at the
    # claim; its summary ("worker stopped: ... discarded 0") once left them out.
    register_request_kind("runtime-plugin")(_Plugin)
    try:
        unknown = Task(items=[TaskItem(request=_Plugin(text="x"))])
        async with open_queue(database_url) as queue:
            await queue.enqueue([unknown])
            known = await enqueue_one(queue)
            remove_request_kind("runtime-plugin")  # this process now lacks the plugin
            other = Worker(queue, burst=True, handle_signals=False)  # idle: it runs nothing
            worker = Worker(queue, ProcessorRegistry(), burst=True, handle_signals=False)
            async with asyncio.timeout(30):
                counts = await worker.run()
                assert (await other.run())["discarded"] == 0  # the discard was the first's
            assert (await queue.get_task(unknown.id)).state is TaskState.DISCARDED
            assert (await queue.get_task(known.id)).state is TaskState.DISCARDED  # no handler
            assert counts["discarded"] == 2
    finally:
        remove_request_kind("runtime-plugin")


@pytest.mark.parametrize("result", [{1, 2}, float("nan"), [1.0, float("inf")]])
async def test_a_result_that_is_not_json_discards_the_task(database_url: str, result: Any) -> None:
    async def odd(item: TaskItem, ctx: TaskContext) -> Any:
        return "fine" if ctx.task.id == kept.id else result

    async with open_queue(database_url) as queue:
        task = await enqueue_one(queue)
        kept = await enqueue_one(queue)
        await burst(queue, odd)
        done = await queue.get_task(task.id)
        assert done.state is TaskState.DISCARDED
        assert "not JSON" in (done.last_error or "")
        # Refused alone: the other task's acknowledgement is written as usual.
        finished = await queue.get_task(kept.id)
        assert finished.state is TaskState.COMPLETED
        assert finished.items[0].result == "fine"


async def test_sync_handlers_run_in_a_thread(database_url: str) -> None:
    import threading

    main = threading.get_ident()

    def blocking(item: TaskItem, ctx: TaskContext) -> JsonValue:
        time.sleep(0.05)
        return threading.get_ident() != main

    registry = ProcessorRegistry()
    registry.add("job", blocking)
    async with open_queue(database_url) as queue:
        task = await enqueue_one(queue)
        async with asyncio.timeout(10):
            await Worker(queue, registry, burst=True, handle_signals=False).run()
        assert (await queue.get_task(task.id)).items[0].result is True


# -- timeouts ------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["task", "config"])
async def test_a_handler_past_its_timeout_is_cancelled_and_the_attempt_retried(
    database_url: str, where: str
) -> None:
    cancelled: list[int] = []

    async def slow(item: TaskItem, ctx: TaskContext) -> JsonValue:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(ctx.task.attempt_count)
            raise
        return None

    config_timeout = 0.2 if where == "config" else 300.0
    async with open_queue(database_url, worker_timeout=config_timeout) as queue:
        fields: dict[str, Any] = {"max_attempts": 2}
        if where == "task":
            fields["timeout_s"] = 0.2
        task = await enqueue_one(queue, **fields)
        await burst(queue, slow)  # 30 s handlers: only the timeouts can end it in time
        done = await queue.get_task(task.id)
        # The first timeout is a failure like any other: retried while attempts remain.
        assert cancelled == [1, 2]
        assert done.state is TaskState.DISCARDED
        setting = {
            "task": "the task's timeout_s (wq submit --timeout) sets the limit",
            "config": "QUEUE_WORKER_TIMEOUT raises the limit, or a task's timeout_s "
            "(wq submit --timeout)",
        }[where]
        assert done.attempt_count == 2
        assert [e.error for e in done.errors] == [f"timed out after 0.2 s ({setting})"] * 2


# -- retry requests and policies -----------------------------------------------------------


async def waits_of(queue: WorkerQueue, handler: Handler, task_id: str) -> tuple[Task, list[float]]:
    """Run a worker until the task ends; how long each attempt began after the one before
    it ended, on the queue's own clock (on PostgreSQL the machine's corrected by its measured
    offset from the server's, a few ms off ``time.time()``) from inside the handler.

    From the end of one attempt's handler to the start of the next is at least the backoff
    (the retry is acknowledged after the handler returned, and is due its delay after
    that). Times of the worker's events would not do: their delivery lags by a varying
    amount on a busy machine, and once made a 0.3 s wait look like 0.298 s."""
    starts: list[float] = []
    ends: list[float] = []

    async def timed(item: TaskItem, ctx: TaskContext) -> JsonValue:
        starts.append(queue.clock())
        try:
            return await handler(item, ctx)
        finally:
            ends.append(queue.clock())

    worker = Worker(queue, registry_with(timed), handle_signals=False)
    async with running(worker):
        done = await until_finished(queue, task_id)
    return done, [start - end for end, start in zip(ends, starts[1:], strict=False)]


async def test_retry_with_a_delay_runs_again_after_that_delay(database_url: str) -> None:
    async def later(item: TaskItem, ctx: TaskContext) -> JsonValue:
        if ctx.task.attempt_count == 1:
            raise Retry(delay=0.5)
        return "second time lucky"

    async with open_queue(database_url, retry_base_delay=100.0) as queue:
        task = await enqueue_one(queue)
        done, waits = await waits_of(queue, later, task.id)
        assert done.state is TaskState.COMPLETED
        assert done.attempt_count == 2
        assert 0.5 <= waits[0] < 3.0  # not the config's 100 s backoff


@pytest.mark.parametrize(
    ("policy", "gaps"),
    [
        (RetryPolicy(kind="fixed", delay_s=0.3), [0.3, 0.3]),
        (RetryPolicy(kind="delays", delays_s=[0.1, 0.6]), [0.1, 0.6]),
    ],
)
async def test_retry_policies_space_the_attempts(
    database_url: str, policy: RetryPolicy, gaps: list[float]
) -> None:
    async def twice_broken(item: TaskItem, ctx: TaskContext) -> JsonValue:
        if ctx.task.attempt_count < 3:
            raise RuntimeError("not yet")
        return "done"

    async with open_queue(database_url, retry_base_delay=100.0) as queue:
        task = await enqueue_one(queue, retry_policy=policy, max_attempts=3)
        done, waits = await waits_of(queue, twice_broken, task.id)
        assert done.state is TaskState.COMPLETED
        assert done.attempt_count == 3
        for got, wanted in zip(waits, gaps, strict=True):
            # Not the queue's 100 s backoff; the slack is for a busy machine's sweeps.
            assert wanted <= got < wanted + 10


async def test_a_retry_policy_deadline_stops_retrying(database_url: str) -> None:
    async def broken(item: TaskItem, ctx: TaskContext) -> JsonValue:
        raise RuntimeError("still broken")

    async with open_queue(database_url) as queue:
        policy = RetryPolicy(kind="fixed", delay_s=5.0, deadline_s=1.0)
        task = await enqueue_one(queue, retry_policy=policy, max_attempts=10)
        done, _ = await waits_of(queue, broken, task.id)
        assert done.state is TaskState.DISCARDED
        assert done.attempt_count == 1
        assert "deadline" in (done.last_error or "")


# -- progress, checkpoints, several items --------------------------------------------------


async def test_callbacks_hear_every_report_and_the_last_value_is_written(database_url: str) -> None:
    async def chatty(item: TaskItem, ctx: TaskContext) -> JsonValue:
        for step in range(1, 51):
            await ctx.progress(step, 50, f"step {step}")
        return "ok"

    async with open_queue(database_url) as queue:
        task = await enqueue_one(queue)
        written: list[TaskEvent] = []
        worker = Worker(queue, registry_with(chatty), burst=True, handle_signals=False)
        worker.register_callback("task_progress", written.append)
        async with asyncio.timeout(10):
            await worker.run()
        assert [e.progress.current for e in written if e.progress] == list(range(1, 51))
        last = written[-1].progress
        assert last is not None
        assert (last.current, last.total, last.message) == (50, 50, "step 50")
        done = await queue.get_task(task.id)
        assert done.progress is not None
        assert done.progress.current == 50


async def test_a_checkpoint_lets_the_next_attempt_resume(database_url: str) -> None:
    seen: list[JsonValue] = []

    async def resumable(item: TaskItem, ctx: TaskContext) -> JsonValue:
        seen.append(ctx.checkpoint_data)
        if ctx.task.attempt_count == 1:
            await ctx.checkpoint({"frames_done": 120})
            raise RuntimeError("crashed half way")
        return "resumed"

    async with open_queue(database_url) as queue:
        task = await enqueue_one(queue)
        await burst(queue, resumable)
        done = await queue.get_task(task.id)
        assert done.state is TaskState.COMPLETED
        assert seen == [None, {"frames_done": 120}]


async def test_items_run_in_order_and_a_retry_skips_the_finished_ones(database_url: str) -> None:
    calls: list[tuple[int, int]] = []

    async def per_item(item: TaskItem, ctx: TaskContext) -> JsonValue:
        calls.append((ctx.task.attempt_count, ctx.index))
        if ctx.index == 2 and ctx.task.attempt_count == 1:
            raise RuntimeError("item 2 failed")
        assert ctx.item is item
        return f"result {ctx.index}"

    async with open_queue(database_url) as queue:
        task = Task(items=[TaskItem(request=JobRequest(name=str(n))) for n in range(4)])
        await queue.enqueue([task])
        await burst(queue, per_item)
        done = await queue.get_task(task.id)
        assert done.state is TaskState.COMPLETED
        assert calls == [(1, 0), (1, 1), (1, 2), (2, 2), (2, 3)]
        assert [i.result for i in done.items] == [f"result {n}" for n in range(4)]


# -- callbacks -----------------------------------------------------------------------------


async def test_callbacks_sync_async_and_failing_ones_never_break_the_loop(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def flaky(item: TaskItem, ctx: TaskContext) -> JsonValue:
        await ctx.progress(1, 1)
        if ctx.task.attempt_count == 1:
            raise RuntimeError("first attempt fails")
        return "ok"

    seen: list[tuple[str, str]] = []

    def record(event: TaskEvent) -> None:
        seen.append((event.name, event.task.id))

    async def record_later(event: TaskEvent) -> None:
        await asyncio.sleep(0)
        seen.append(("async " + event.name, event.task.id))

    def explode(event: TaskEvent) -> None:
        raise RuntimeError("callback bug")

    async def explode_later(event: TaskEvent) -> None:
        raise RuntimeError("async callback bug")

    async with open_queue(database_url) as queue:
        task = await enqueue_one(queue)
        worker = Worker(queue, registry_with(flaky), burst=True, handle_signals=False)
        for name in ("task_started", "task_progress", "task_retry", "task_completed"):
            worker.register_callback(name, explode)
            worker.register_callback(name, record)
            worker.register_callback(name, explode_later)
            worker.register_callback(name, record_later)
        with pytest.raises(ValueError, match="unknown event"):
            worker.register_callback("task_exploded", record)
        with caplog.at_level(logging.ERROR, logger="worker.runtime.events"):
            async with asyncio.timeout(10):
                await worker.run()
        assert (await queue.get_task(task.id)).state is TaskState.COMPLETED
        names = [name for name, task_id in seen if task_id == task.id and "async" not in name]
        assert names == [
            "task_started",
            "task_progress",
            "task_retry",
            "task_started",
            "task_progress",
            "task_completed",
        ]
        assert len([n for n, _ in seen if n.startswith("async")]) == 6
        failures = [r for r in caplog.records if "callback" in r.getMessage()]
        assert len(failures) == 12
        assert all(r.exc_info for r in failures)


# -- wake-ups ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "producer",
    ["same queue", "another connection"],  # SQLite: the file changed; PostgreSQL: NOTIFY
)
async def test_an_idle_worker_wakes_on_enqueue_without_waiting_for_the_poll(
    database_url: str, producer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        open_queue(database_url, poll_interval=10.0) as queue,
        open_queue(database_url) as other,
    ):
        started = asyncio.Event()
        empty_claims = 0
        claim = queue.dequeue

        async def counted(*args: Any, **kwargs: Any) -> list[Task]:
            nonlocal empty_claims
            claimed = await claim(*args, **kwargs)
            empty_claims += not claimed
            return claimed

        monkeypatch.setattr(queue, "dequeue", counted)
        worker = Worker(queue, registry_with(ok), handle_signals=False)
        worker.register_callback("task_started", lambda event: started.set())
        async with running(worker):

            async def idle() -> bool:
                return empty_claims > 0

            await wait_until(idle, 10, "idle")  # found nothing: its fallback poll 10 s away
            sent = time.monotonic()
            await enqueue_one(queue if producer == "same queue" else other)
            async with asyncio.timeout(8):
                await started.wait()
            assert time.monotonic() - sent < 5.0, "woken, not polled"


async def test_a_lost_lease_stops_the_handler_and_drops_its_result(database_url: str) -> None:
    stopped = asyncio.Event()

    async def slow(item: TaskItem, ctx: TaskContext) -> JsonValue:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            stopped.set()
            raise
        return "too late"

    async with (
        open_queue(database_url, default_visibility_timeout=0.6) as queue,
        open_queue(database_url) as operator,
    ):
        task = await enqueue_one(queue, max_attempts=1)
        started = asyncio.Event()
        worker = Worker(queue, registry_with(slow), handle_signals=False, sweep_interval_s=60)
        worker.register_callback("task_started", lambda event: started.set())
        async with running(worker):
            async with asyncio.timeout(5):
                await started.wait()
            # A sweep that counts any lease untouched for 10 ms as expired takes the task away
            # (the first sweeps may come within 10 ms of the claim or a renewal).
            swept: list[str] = []

            async def taken() -> bool:
                swept.extend(t.id for t in await operator.retry(visibility_timeout=0.01))
                return bool(swept)

            await wait_until(taken, 5, "the lease taken away", step=0.005)
            assert swept == [task.id]
            async with asyncio.timeout(5):
                await stopped.wait()
        done = await queue.get_task(task.id)
        assert done.state is TaskState.DISCARDED  # its only attempt expired; nothing overwrote it
        assert done.last_error == "visibility timeout expired"
        assert worker.counts["completed"] == 0


async def test_a_running_worker_is_in_the_registry(database_url: str) -> None:
    async with open_queue(database_url) as queue:
        worker = Worker(queue, registry_with(ok), handle_signals=False, concurrency=3)
        async with running(worker):

            async def registered() -> bool:
                return await queue.live_workers() != []

            await wait_until(registered, 10, "registered")
            [row] = await queue.live_workers()
            assert row["id"] == worker.id
            assert row["concurrency"] == 3
            assert row["pid"] == os.getpid()
        assert await queue.live_workers() == []

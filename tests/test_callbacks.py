"""Callbacks by name on both backends: ``on_success`` after a completion and ``on_failure``
after a discard, each persisted and retried with backoff until it succeeds, never changing
the task; modules not allowed are refused, and ``wq status`` shows the runs."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import exc as sa_exc

from tests.runtime_worker import JobRequest, job_registry, job_task
from tests.support import FakeClock, raw_sql
from tests.test_cli import wq
from tests.test_webhooks_migrations import migrate
from worker import (
    CallbackState,
    InvalidTaskError,
    QueueConfig,
    Task,
    TaskState,
    Worker,
    WorkerQueue,
)
from worker.core.backoff import JITTER_FRACTION
from worker.core.callbacks import CallbackEvent
from worker.runtime.callbacks import CallbackRunner

HOOKS = "tests.callback_hooks"


@pytest.fixture
def config(database_url: str) -> QueueConfig:
    return QueueConfig(
        database_url=database_url,
        callback_allowed_modules=[HOOKS],
        callback_base_delay=10.0,
        retry_backoff_multiplier=2.0,
        callback_max_attempts=5,
    )


@pytest.fixture
async def queue(config: QueueConfig, clock: FakeClock) -> AsyncIterator[WorkerQueue]:
    async with WorkerQueue(config, worker_id="test-worker", clock=clock) as q:
        yield q


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def finished(queue: WorkerQueue, task: Task, *, results: list[object] | None = None) -> Task:
    """Enqueue ``task``, claim it and complete it (with ``results``) or, without, discard it."""
    await queue.enqueue([task])
    (claimed,) = await queue.dequeue(1)
    if results is None:
        await queue.mark_as_discarded(claimed.id, "boom", lease_id=claimed.lease_id)
    else:
        await queue.mark_as_complete(claimed.id, lease_id=claimed.lease_id, results=results)  # type: ignore[arg-type]
    return await queue.get_task(claimed.id)


async def test_a_callback_that_fails_twice_runs_until_it_succeeds_and_never_again(
    queue: WorkerQueue, clock: FakeClock, tmp_path: Path
) -> None:
    log = tmp_path / "hooks.log"
    task = job_task(
        on_success=f"{HOOKS}:flaky_success", metadata={"log": str(log), "fail_times": 2}
    )
    done = await finished(queue, task, results=[{"answer": 42}])
    runner = CallbackRunner(queue)
    assert await runner.tick() == 1  # made and run at once: attempt 1 fails
    assert lines(log) == ["attempt"]
    (run,) = await queue.task_callbacks(done.id)
    assert (run.state, run.attempts, run.event) == (CallbackState.PENDING, 1, CallbackEvent.SUCCESS)
    assert run.last_error == "RuntimeError: not yet"
    assert run.next_attempt_at is not None
    assert clock.now + 10.0 <= run.next_attempt_at <= clock.now + 10.0 * (1 + JITTER_FRACTION)
    assert await runner.tick() == 0  # backing off
    clock.now = run.next_attempt_at
    assert await runner.tick() == 1  # attempt 2 fails; the next waits 20 s (and a jitter)
    (run,) = await queue.task_callbacks(done.id)
    assert run.next_attempt_at is not None
    assert clock.now + 20.0 <= run.next_attempt_at <= clock.now + 20.0 * (1 + JITTER_FRACTION)
    clock.now = run.next_attempt_at
    assert await runner.tick() == 1  # attempt 3 succeeds
    assert lines(log) == ["attempt"] * 3 + [f'success {done.id} {{"answer": 42}}']
    for _ in range(3):
        clock.advance(3600.0)
        assert await runner.tick() == 0
    (run,) = await queue.task_callbacks(done.id)
    assert (run.state, run.attempts, run.last_error) == (CallbackState.DONE, 3, None)
    assert run.done_at == clock.now - 3 * 3600.0
    assert await queue.get_task(done.id) == done  # the outcome is what it was
    assert len(lines(log)) == 4


async def test_on_failure_runs_after_a_discard_with_the_error_and_on_success_does_not(
    queue: WorkerQueue, tmp_path: Path
) -> None:
    log = tmp_path / "hooks.log"
    named = {"on_success": f"{HOOKS}:flaky_success", "on_failure": f"{HOOKS}:record_failure"}
    discarded = await finished(queue, job_task(metadata={"log": str(log)}, **named))
    cancelled = job_task(metadata={"log": str(log)}, **named)
    await queue.enqueue([cancelled])
    await queue.mark_as_cancelled(cancelled.id)
    runner = CallbackRunner(queue)
    assert await runner.tick() == 1
    assert lines(log) == ["attempt", f"failure {discarded.id} boom"]
    (run,) = await queue.task_callbacks(discarded.id)
    assert (run.event, run.target, run.state) == (
        CallbackEvent.FAILURE,
        f"{HOOKS}:record_failure",
        CallbackState.DONE,
    )
    assert await queue.task_callbacks(cancelled.id) == []  # cancelled: neither runs
    after = await queue.get_task(discarded.id)
    assert (after.state, after.last_error) == (TaskState.DISCARDED, "boom")


async def test_a_callback_in_a_module_not_allowed_is_refused_and_shown_on_the_task(
    queue: WorkerQueue, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    done = await finished(queue, job_task(on_success="os.path:join"), results=[1])
    with caplog.at_level(logging.WARNING, logger="worker.runtime.callbacks"):
        assert await CallbackRunner(queue).tick() == 1
    (run,) = await queue.task_callbacks(done.id)
    assert (run.state, run.attempts) == (CallbackState.FAILED, 1)
    assert run.last_error == (
        "callback 'os.path:join' refused: module 'os.path' is not allowed: add it to "
        "QUEUE_CALLBACK_ALLOWED_MODULES (callback_allowed_modules) to let tasks name its "
        "functions as callbacks"
    )
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "os.path:join" in warning
    assert "given up" in warning
    assert await queue.get_task(done.id) == done
    status = wq(database_url, "status", done.id, "--json")
    assert status.code == 0, status.err
    document = status.json()
    assert (document["on_success"], document["state"]) == ("os.path:join", "completed")
    assert [(c["state"], c["attempts"]) for c in document["callbacks"]] == [("failed", 1)]
    panel = wq(database_url, "status", done.id)
    assert "on_success os.path:join: failed after 1 attempt" in panel.out, panel.out


async def test_a_callback_whose_worker_died_runs_again_after_its_lease(
    queue: WorkerQueue, clock: FakeClock, tmp_path: Path
) -> None:
    log = tmp_path / "hooks.log"
    done = await finished(
        queue,
        job_task(on_success=f"{HOOKS}:flaky_success", metadata={"log": str(log)}),
        results=[0],
    )
    runner = CallbackRunner(queue)
    await runner.collect()
    (lost,) = await queue.storage.callbacks.claim(clock.now, 90.0, 16)  # a worker that died
    assert await runner.run_due() == 0
    clock.advance(90.0)
    assert await runner.run_due() == 1
    assert lines(log) == ["attempt", f"success {done.id} 0"]
    assert not await queue.storage.callbacks.done(lost, clock.now)  # its lease was lost


def test_a_callback_name_must_be_dotted() -> None:
    with pytest.raises(
        ValidationError, match=r"a callback must look like 'package\.module:function'"
    ):
        job_task(on_failure="no-colon")


async def test_enqueue_refuses_a_bad_callback_name(queue: WorkerQueue) -> None:
    bad = {"items": [{"request": JobRequest()}], "on_success": "a b:c"}
    with pytest.raises(InvalidTaskError, match=r"tasks\[0\]\.on_success"):
        await queue.enqueue([bad])


async def test_a_burst_worker_runs_the_callbacks_of_its_tasks_before_it_exits(
    database_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "hooks.log"
    config = QueueConfig(
        database_url=database_url,
        callback_allowed_modules=[HOOKS],
        callback_base_delay=0.0,
        poll_interval=0.1,
        callback_interval=60.0,  # only the drain before exit runs them
    )
    async with WorkerQueue(config) as queue:
        task = job_task(
            on_success=f"{HOOKS}:flaky_success", metadata={"log": str(log), "fail_times": 2}
        )
        await queue.enqueue([task])
        counts = await Worker(queue, job_registry(), burst=True, handle_signals=False).run()
        assert counts["completed"] == 1
        (run,) = await queue.task_callbacks(task.id)
        done = await queue.get_task(task.id)
    assert (run.state, run.attempts) == (CallbackState.DONE, 3)
    assert lines(log)[-1].startswith(f"success {task.id} ")
    assert done.state is TaskState.COMPLETED


async def test_revision_0005_goes_down_to_0004_and_up_again_keeping_tasks(
    database_url: str, clock: FakeClock
) -> None:
    """Downgraded, the tables and columns of 0005 are gone and tasks stay; upgraded again,
    the callback scan starts after the tasks that had ended (they name no callbacks)."""
    config = QueueConfig(database_url=database_url, callback_allowed_modules=[HOOKS])
    async with WorkerQueue(config, clock=clock) as queue:
        ended = await finished(queue, job_task(), results=[1])
        await queue.schedule("s", interval_s=60, request=JobRequest())
    sqlite = database_url.startswith("sqlite")
    indexes = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tasks'"
    await migrate(config, "0005", down=True)  # the later revisions' indexes go
    before = sorted(await raw_sql(database_url, indexes)) if sqlite else []
    await migrate(config, "0004", down=True)
    tables = await raw_sql(database_url, "SELECT id, state FROM tasks")
    assert tables == [(ended.id, "completed")]
    for gone in ("schedules", "task_callbacks", "callback_scan"):
        with pytest.raises(sa_exc.DBAPIError):
            await raw_sql(database_url, f"SELECT 1 FROM {gone}")
    with pytest.raises(sa_exc.DBAPIError):
        await raw_sql(database_url, "SELECT on_success FROM tasks")
    await migrate(config, "0005")
    if sqlite:  # the rebuild that dropped the columns kept the claim index descending
        assert sorted(await raw_sql(database_url, indexes)) == before
    assert await raw_sql(database_url, "SELECT scanned_to_at FROM callback_scan") == [
        (ended.finished_at,)
    ]
    async with WorkerQueue(config, clock=clock) as queue:
        assert (await queue.get_task(ended.id)).on_success is None
        assert await queue.list_schedules() == []


async def test_a_batch_of_tasks_with_and_without_callbacks_stores_each_as_given(
    queue: WorkerQueue,
) -> None:
    """A batch in which no task names a callback is inserted without those columns; one in
    which some do fills them in for all (the backend's bulk load or executemany alike)."""
    plain = [job_task() for _ in range(3)]
    mixed = [job_task(), job_task(on_failure=f"{HOOKS}:record_failure"), job_task()]
    assert await queue.enqueue(plain) == 3
    assert await queue.enqueue(mixed) == 3
    stored = [await queue.get_task(t.id) for t in [*plain, *mixed]]
    assert [t.on_failure for t in stored] == [None] * 4 + [f"{HOOKS}:record_failure", None]
    assert all(t.on_success is None for t in stored)

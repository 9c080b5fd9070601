"""The whole transition table: every allowed move, every refused one, and an unknown id."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from tests.support import FakeClock, make_task
from worker import (
    InvalidStateTransitionError,
    TaskNotFoundError,
    TaskState,
    WorkerQueue,
)
from worker.core.ids import new_id

Operation = Callable[[WorkerQueue, str], Awaitable[object]]

OPERATIONS: dict[str, Operation] = {
    "complete": lambda q, i: q.mark_as_complete(i),
    "retry": lambda q, i: q.mark_as_retry(i, "boom"),
    "discard": lambda q, i: q.mark_as_discarded(i, "bad input"),
    "cancel": lambda q, i: q.mark_as_cancelled(i),
    "resume": lambda q, i: q.mark_as_resume(i),
}

# operation -> (states it accepts, the state it leaves)
ALLOWED: dict[str, tuple[set[TaskState], TaskState]] = {
    "complete": ({TaskState.PROCESSING}, TaskState.COMPLETED),
    "retry": ({TaskState.PROCESSING}, TaskState.RETRYABLE),
    "discard": ({TaskState.PROCESSING}, TaskState.DISCARDED),
    "cancel": ({TaskState.PENDING, TaskState.RETRYABLE}, TaskState.CANCELLED),
    "resume": ({TaskState.DISCARDED}, TaskState.PENDING),
}


async def task_in(queue: WorkerQueue, state: TaskState) -> str:
    """A fresh task brought to ``state`` through the public API."""
    task = make_task()
    await queue.enqueue([task])
    if state is TaskState.PENDING:
        return task.id
    (claimed,) = await queue.dequeue(size=1)
    assert claimed.id == task.id
    if state is TaskState.COMPLETED:
        await queue.mark_as_complete(task.id)
    elif state is TaskState.RETRYABLE:
        await queue.mark_as_retry(task.id, "boom")
    elif state is TaskState.DISCARDED:
        await queue.mark_as_discarded(task.id)
    elif state is TaskState.CANCELLED:
        await queue.mark_as_retry(task.id, "boom")
        await queue.mark_as_cancelled(task.id)
    assert (await queue.get_task(task.id)).state is state
    return task.id


CASES = [(op, state) for op in OPERATIONS for state in TaskState]


@pytest.mark.parametrize(("operation", "state"), CASES, ids=[f"{o}-{s}" for o, s in CASES])
async def test_transition_table(queue: WorkerQueue, operation: str, state: TaskState) -> None:
    task_id = await task_in(queue, state)
    accepts, result = ALLOWED[operation]
    if operation == "cancel" and state is TaskState.PROCESSING:
        # A running task is asked to stop; its worker ends it (tests/test_cancel.py).
        await OPERATIONS[operation](queue, task_id)
        task = await queue.get_task(task_id)
        assert task.state is TaskState.PROCESSING
        assert task.cancel_requested_at is not None
    elif state in accepts:
        await OPERATIONS[operation](queue, task_id)
        assert (await queue.get_task(task_id)).state is result
    else:
        with pytest.raises(InvalidStateTransitionError) as raised:
            await OPERATIONS[operation](queue, task_id)
        assert raised.value.state == state.value
        assert state.value in str(raised.value)
        assert (await queue.get_task(task_id)).state is state, "a refused write changed nothing"


@pytest.mark.parametrize("operation", OPERATIONS)
async def test_unknown_id(queue: WorkerQueue, operation: str) -> None:
    missing = new_id()
    with pytest.raises(TaskNotFoundError, match=missing):
        await OPERATIONS[operation](queue, missing)


async def test_unknown_id_on_reads(queue: WorkerQueue) -> None:
    with pytest.raises(TaskNotFoundError):
        await queue.get_task(new_id())


async def test_terminal_states_record_finish_time(queue: WorkerQueue, clock: FakeClock) -> None:
    for state in (TaskState.COMPLETED, TaskState.DISCARDED, TaskState.CANCELLED):
        task = await queue.get_task(await task_in(queue, state))
        assert task.finished_at == clock.now


async def test_complete_stores_item_results(queue: WorkerQueue) -> None:
    task = make_task()
    await queue.enqueue([task])
    (claimed,) = await queue.dequeue(size=1)
    await queue.mark_as_complete(claimed.id, lease_id=claimed.lease_id, results=[{"ok": 1}])
    stored = await queue.get_task(task.id)
    assert stored.items[0].result == {"ok": 1}
    assert stored.items[0].request == task.items[0].request


async def test_retry_and_discard_keep_each_attempts_error(
    queue: WorkerQueue, clock: FakeClock
) -> None:
    task = make_task(max_attempts=5)
    await queue.enqueue([task])
    for attempt, error in enumerate(["first", "second"], start=1):
        clock.advance(1000)
        (claimed,) = await queue.dequeue(size=1)
        assert claimed.attempt_count == attempt
        await queue.mark_as_retry(claimed.id, error)
        await queue.retry()
    clock.advance(1000)
    (claimed,) = await queue.dequeue(size=1)
    await queue.mark_as_discarded(claimed.id, "fatal")
    stored = await queue.get_task(task.id)
    assert stored.state is TaskState.DISCARDED
    assert stored.last_error == "fatal"
    assert [(e.attempt, e.error) for e in stored.errors] == [
        (1, "first"),
        (2, "second"),
        (3, "fatal"),
    ]


async def test_resume_grants_another_attempt(queue: WorkerQueue, clock: FakeClock) -> None:
    task = make_task(max_attempts=1)
    await queue.enqueue([task])
    (claimed,) = await queue.dequeue(size=1)
    await queue.mark_as_retry(claimed.id, "boom")
    (swept,) = await queue.retry()
    assert swept.state is TaskState.DISCARDED, "one attempt allowed, one used"
    await queue.mark_as_resume(task.id)
    resumed = await queue.get_task(task.id)
    assert resumed.state is TaskState.PENDING
    assert resumed.schedule_at == clock.now
    assert resumed.max_attempts == 2
    assert resumed.finished_at is None
    (again,) = await queue.dequeue(size=1)
    assert again.attempt_count == 2
    await queue.mark_as_complete(again.id, lease_id=again.lease_id)

"""Reads (get, keyset listing, statistics) and retention (purge)."""

from __future__ import annotations

import pytest

from tests.support import FakeClock, make_task
from worker import InvalidInputError, TaskState, WorkerQueue


async def test_list_tasks_pages_by_id(queue: WorkerQueue) -> None:
    tasks = [make_task(str(n), queue="a" if n % 2 else "b") for n in range(25)]
    await queue.enqueue(tasks)
    pages = []
    after: str | None = None
    while page := await queue.list_tasks(limit=10, after_id=after):
        pages.append([t.id for t in page])
        after = page[-1].id
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [i for p in pages for i in p] == [t.id for t in tasks]
    in_a = await queue.list_tasks(queue="a", limit=100)
    assert [t.id for t in in_a] == [t.id for t in tasks if t.queue == "a"]


async def test_list_tasks_by_state(queue: WorkerQueue) -> None:
    await queue.enqueue([make_task(str(n)) for n in range(5)])
    claimed = await queue.dequeue(size=2)
    listed = await queue.list_tasks(state="processing")
    assert [t.id for t in listed] == [t.id for t in claimed]
    assert len(await queue.list_tasks(state=TaskState.PENDING)) == 3
    with pytest.raises(InvalidInputError, match="unknown state 'running'"):
        await queue.list_tasks(state="running")


async def test_a_cursor_that_is_not_a_task_id_is_refused(queue: WorkerQueue) -> None:
    await queue.enqueue([make_task(str(n)) for n in range(3)])
    for cursor in ("notaulid", "01arz3ndektsv4rrffq69g5fav", " "):  # the last two: not as stored
        with pytest.raises(InvalidInputError, match=r"after_id: a task id \(a ULID"):
            await queue.list_tasks(after_id=cursor)


async def test_stats_count_every_state(queue: WorkerQueue) -> None:
    await queue.enqueue([make_task(str(n)) for n in range(6)])
    await queue.enqueue([make_task("other", queue="audio")])
    a, b, c, d = await queue.dequeue(size=4, queues=["default"])
    await queue.mark_as_complete(a.id)
    await queue.mark_as_retry(b.id, "x")
    await queue.mark_as_discarded(c.id)
    await queue.mark_as_retry(d.id, "x")
    await queue.mark_as_cancelled(d.id)
    assert await queue.get_queue_stats() == {
        "pending": 3,
        "processing": 0,
        "completed": 1,
        "retryable": 1,
        "discarded": 1,
        "cancelled": 1,
        "total": 7,
    }
    audio = await queue.get_queue_stats(queue="audio")
    assert audio["pending"] == audio["total"] == 1
    assert (await queue.get_queue_stats(queue="nothing"))["total"] == 0


async def test_purge_removes_old_terminal_tasks_only(queue: WorkerQueue, clock: FakeClock) -> None:
    await queue.enqueue([make_task(str(n)) for n in range(4)])
    a, b, c = await queue.dequeue(size=3)
    await queue.mark_as_complete(a.id)
    await queue.mark_as_discarded(b.id)
    clock.advance(3600)
    await queue.mark_as_complete(c.id)  # finished recently
    clock.advance(60)
    assert await queue.purge(older_than_s=600) == 2
    remaining = {t.id: t.state for t in await queue.list_tasks()}
    assert a.id not in remaining
    assert b.id not in remaining
    assert remaining[c.id] is TaskState.COMPLETED
    assert TaskState.PENDING in remaining.values()
    assert await queue.purge(older_than_s=0, states=["discarded"]) == 0
    assert await queue.purge(older_than_s=0, states=[TaskState.COMPLETED]) == 1


async def test_purge_refuses_live_states(queue: WorkerQueue) -> None:
    with pytest.raises(InvalidInputError, match="only terminal tasks, not pending"):
        await queue.purge(0, states=[TaskState.PENDING])
    with pytest.raises(InvalidInputError, match="older_than_s"):
        await queue.purge(-1)


async def test_size_and_limit_must_be_positive(queue: WorkerQueue) -> None:
    with pytest.raises(InvalidInputError, match="size"):
        await queue.dequeue(size=0)
    with pytest.raises(InvalidInputError, match="limit"):
        await queue.list_tasks(limit=0)
    with pytest.raises(InvalidInputError, match="max_attempts"):
        await queue.retry(max_attempts=0)

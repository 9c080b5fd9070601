"""Filters of the task list in SQL (state, queue, kind, name, error text, created range) and
bulk actions by id and by filter, with their counts, on both backends."""

from __future__ import annotations

import pytest

from tests.support import FakeClock, make_task
from worker import InvalidInputError, RetryPolicy, Task, TaskItem, TaskState, WorkerQueue
from worker.builtins.requests import CallRequest
from worker.core.selection import TaskFilter


def call_task(**fields: object) -> Task:
    return Task(items=[TaskItem(request=CallRequest(target="os:getcwd"))], **fields)


async def _ids(wq: WorkerQueue, **filters: object) -> list[str]:
    """Every page of two, each after the last task of the page before (and for pending
    tasks after its place: its priority as that page saw it)."""
    found: list[str] = []
    after: Task | None = None
    pending = filters.get("state") == "pending"
    while page := await wq.list_tasks(
        limit=2,
        after_id=None if after is None else after.id,
        after_priority=after.priority if after is not None and pending else None,
        **filters,  # type: ignore[arg-type]
    ):
        found += [t.id for t in page]
        after = page[-1]
    return found


async def test_each_filter_matches_in_sql_across_keyset_pages(
    queue: WorkerQueue, clock: FakeClock
) -> None:
    early = [make_task(str(n), name="early") for n in range(3)]
    await queue.enqueue(early)
    clock.advance(100)
    calls = [call_task(queue="other", name=f"c{n}") for n in range(3)]
    await queue.enqueue(calls)
    [claimed] = await queue.dequeue(size=1, queues=["other"])
    await queue.mark_as_discarded(claimed.id, "Boom: Disk FULL on /dev/sda")
    start = clock.now - 100

    assert await _ids(queue, kind="tts") == [t.id for t in early]
    assert await _ids(queue, kind="call") == [t.id for t in calls]
    assert await _ids(queue, kind="nope") == []
    assert await _ids(queue, name="early") == [t.id for t in early]
    assert await _ids(queue, name="c1") == [calls[1].id]
    assert await _ids(queue, error="disk full") == [claimed.id]
    assert await _ids(queue, error="%") == []  # a LIKE wildcard is taken literally
    assert await _ids(queue, created_after=start + 50) == [t.id for t in calls]
    assert await _ids(queue, created_before=start + 50) == [t.id for t in early]
    assert await _ids(queue, created_after=start, created_before=start + 1) == [t.id for t in early]
    assert await _ids(queue, state="discarded", queue="other") == [claimed.id]
    assert await _ids(queue, state="pending", kind="call") == [calls[1].id, calls[2].id]
    assert await queue.count_tasks(TaskFilter(kind="call")) == 3
    assert await queue.count_tasks(TaskFilter(state=TaskState.PENDING)) == 5
    assert await queue.count_tasks() == 6
    with pytest.raises(InvalidInputError, match="queue"):
        await queue.count_tasks(TaskFilter(queue="no spaces"))
    with pytest.raises(InvalidInputError, match="created_after"):
        await queue.list_tasks(created_after=float("nan"))


async def test_a_kind_inside_a_request_is_not_the_task_s_kind(queue: WorkerQueue) -> None:
    tricky = Task(items=[TaskItem(request=CallRequest(target="os:getcwd", kwargs={"kind": "tts"}))])
    await queue.enqueue([tricky])
    assert await _ids(queue, kind="tts") == []
    assert await _ids(queue, kind="call") == [tricky.id]


async def test_bulk_by_ids_counts_changed_skipped_and_missing(queue: WorkerQueue) -> None:
    tasks = [make_task(str(n)) for n in range(4)]
    await queue.enqueue(tasks)
    [running] = await queue.dequeue(size=1)
    pending = [t.id for t in tasks if t.id != running.id]
    await queue.hold(pending[0])
    missing = "01ARZ3NDEKTSV4RRFFQ69G5FAV"

    held = await queue.act_on_tasks("hold", ids=[*pending, running.id, missing])
    assert (held.matched, held.changed, held.skipped) == (4, 2, 2)
    assert set(held.skipped_ids) == {pending[0], running.id}
    assert held.not_found == [missing]
    assert all([(await queue.get_task(i)).held for i in pending])

    released = await queue.act_on_tasks("release", ids=pending)
    assert released.changed == 3
    assert not any([(await queue.get_task(i)).held for i in pending])

    cancelled = await queue.act_on_tasks("cancel", ids=[*pending, running.id])
    assert (cancelled.changed, cancelled.cancel_requested, cancelled.skipped) == (4, 1, 0)
    assert {(await queue.get_task(i)).state for i in pending} == {TaskState.CANCELLED}
    still = await queue.get_task(running.id)
    assert still.state is TaskState.PROCESSING
    assert still.cancel_requested_at is not None
    again = await queue.act_on_tasks("cancel", ids=pending)
    assert (again.changed, again.skipped) == (0, 3)
    with pytest.raises(InvalidInputError, match="unknown action 'explode'"):
        await queue.act_on_tasks("explode", ids=pending)
    with pytest.raises(InvalidInputError, match="give the tasks to act on: ids, or a selection"):
        await queue.act_on_tasks("cancel")
    with pytest.raises(InvalidInputError, match=r"either ids or a selection .*, not both"):
        await queue.act_on_tasks("cancel", ids=pending, selection=TaskFilter())


async def test_bulk_by_filter_walks_every_match_in_batches(
    queue: WorkerQueue, clock: FakeClock
) -> None:
    await queue.enqueue([make_task(str(n), queue="bulk") for n in range(2500)])
    await queue.enqueue([make_task("keep", queue="other")])
    held = TaskFilter(queue="bulk")
    assert await queue.count_tasks(held) == 2500
    outcome = await queue.act_on_tasks("hold", selection=held)
    assert (outcome.matched, outcome.changed, outcome.skipped) == (2500, 2500, 0)
    assert await queue.dequeue(size=10, queues=["bulk"]) == []
    resumed = await queue.act_on_tasks("resume", selection=held)  # resume releases a hold
    assert resumed.changed == 2500
    await queue.enqueue([make_task("later", queue="bulk", schedule_at=clock.now + 3600)])
    ran = await queue.act_on_tasks("run_now", selection=held)
    assert (ran.matched, ran.changed, ran.skipped) == (2501, 1, 2500)
    gone = await queue.act_on_tasks("cancel", selection=TaskFilter(queue="bulk", name=None))
    assert gone.changed == 2501
    assert (await queue.get_queue_stats("bulk"))["cancelled"] == 2501
    assert (await queue.get_queue_stats("other"))["pending"] == 1


async def test_bulk_resume_runs_discarded_tasks_again(queue: WorkerQueue) -> None:
    await queue.enqueue([make_task(str(n)) for n in range(3)])
    claimed = await queue.dequeue(size=3)
    for task in claimed:
        await queue.mark_as_discarded(task.id, "bad luck")
    outcome = await queue.act_on_tasks("resume", selection=TaskFilter(error="BAD LUCK"))
    assert outcome.changed == 3
    assert {t.state for t in await queue.list_tasks()} == {TaskState.PENDING}


async def test_cancelling_a_dependency_in_bulk_cancels_its_dependents(queue: WorkerQueue) -> None:
    first = make_task("first", queue="a")
    await queue.enqueue([first])
    second = make_task("second", queue="b", depends_on=[first.id])
    await queue.enqueue([second])
    outcome = await queue.act_on_tasks("cancel", selection=TaskFilter(queue="a"))
    assert outcome.changed == 1
    assert (await queue.get_task(second.id)).state is TaskState.CANCELLED


async def test_pending_tasks_are_listed_in_the_order_workers_claim_them(
    queue: WorkerQueue,
) -> None:
    """Higher priority first, then older; pages follow that order across priorities, and
    a task's place in the list is its position in line (here, where every task is due, in
    one queue, neither held nor waiting: ``queue_position`` counts only those ahead)."""
    tasks = [make_task(str(n), priority=p) for n, p in enumerate([0, 5, 0, 9, 5, 0, -1])]
    await queue.enqueue(tasks)
    done = make_task("done", priority=20)
    await queue.enqueue([done])
    [claimed] = await queue.dequeue(1)
    assert claimed.id == done.id
    by_claim = [t.id for t in sorted(tasks, key=lambda t: (-t.priority, t.id))]
    assert await _ids(queue, state="pending") == by_claim  # pages of two
    assert [t.id for t in await queue.list_tasks(state="pending")] == by_claim
    for ahead, task_id in enumerate(by_claim):
        assert await queue.queue_position(task_id) == ahead
    # Every other selection is in id order.
    assert await _ids(queue) == [t.id for t in [*tasks, done]]
    claims = [t.id for t in await queue.dequeue(len(tasks))]
    assert claims == by_claim


async def test_a_pending_page_goes_on_from_where_the_last_one_ended(
    queue: WorkerQueue, clock: FakeClock
) -> None:
    """The next page starts at the last task's place as the page before saw it: a retry
    that lowers that task's priority meanwhile (``priority_step``) moves nothing, and a
    task purged since still marks the place."""
    step = RetryPolicy(kind="fixed", delay_s=0, priority_step=-1)
    mine = [make_task(str(n), queue="a", retry_policy=step) for n in range(6)]
    others = [make_task(f"b{n}", queue="b") for n in range(3)]
    await queue.enqueue([task for pair in zip(mine, others, strict=False) for task in pair])
    await queue.enqueue(mine[3:])
    first = await queue.list_tasks(state="pending", queue="a", limit=2)
    assert [t.id for t in first] == [mine[0].id, mine[1].id]
    done, failed = await queue.dequeue(2, queues=["a"])  # the page's own two
    await queue.mark_as_complete(done.id, lease_id=done.lease_id)
    await queue.mark_as_retry(failed.id, "boom", lease_id=failed.lease_id)
    clock.advance(1)
    await queue.retry()
    assert (await queue.get_task(failed.id)).priority == -1

    async def after_first(priority: int | None) -> list[str]:
        page = await queue.list_tasks(
            state="pending", queue="a", limit=2, after_id=first[-1].id, after_priority=priority
        )
        return [t.id for t in page]

    assert await after_first(0) == [mine[2].id, mine[3].id]
    # Without the priority the task's own now is taken: it sits at -1, behind them all.
    assert await after_first(None) == []
    # Walked to the end, the failed task comes last, where it now waits in line.
    assert await _ids(queue, state="pending", queue="a") == [t.id for t in mine[2:]] + [failed.id]

    clock.advance(3600)
    assert await queue.purge(older_than_s=60) == 1  # the completed one
    gone = {"state": "pending", "queue": "a", "limit": 2, "after_id": done.id}
    with pytest.raises(InvalidInputError, match="after_priority"):
        await queue.list_tasks(**gone)  # type: ignore[arg-type]
    page = await queue.list_tasks(**gone, after_priority=0)  # type: ignore[arg-type]
    assert [t.id for t in page] == [mine[2].id, mine[3].id]
    with pytest.raises(InvalidInputError, match="after_priority"):
        await queue.list_tasks(state="pending", after_id=done.id, after_priority=10**9)
    # It means a place among pending tasks only: elsewhere it would be silently ignored.
    for misplaced in ({"state": "discarded", "after_id": done.id}, {"state": "pending"}):
        with pytest.raises(InvalidInputError, match="only with state='pending' and after_id"):
            await queue.list_tasks(**misplaced, after_priority=0)  # type: ignore[arg-type]

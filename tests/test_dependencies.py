"""Dependencies: a task waits for the tasks it depends on; a failed one cancels its dependents."""

from __future__ import annotations

import pytest

from tests.support import FakeClock, make_task
from worker import Completion, InvalidTaskError, TaskState, WorkerQueue
from worker.core.ids import new_id


async def claim_ids(queue: WorkerQueue) -> list[str]:
    return [t.id for t in await queue.dequeue(size=100)]


async def test_dependent_waits_until_all_dependencies_complete(queue: WorkerQueue) -> None:
    first, second = make_task("a"), make_task("b")
    await queue.enqueue([first, second])
    child = make_task("c", depends_on=[first.id, second.id])
    await queue.enqueue([child])
    assert (await queue.get_task(child.id)).waiting_on == 2
    claimed = await queue.dequeue(size=10)
    assert {t.id for t in claimed} == {first.id, second.id}
    await queue.mark_as_complete(first.id)
    assert await claim_ids(queue) == []
    assert (await queue.get_task(child.id)).waiting_on == 1
    await queue.mark_as_complete(second.id)
    assert await claim_ids(queue) == [child.id]


async def test_dependencies_within_one_batch_and_batch_acks(queue: WorkerQueue) -> None:
    parent = make_task("p", id=new_id())
    child = make_task("c", depends_on=[parent.id])
    await queue.enqueue([parent, child])
    (claimed,) = await queue.dequeue(size=10)
    assert claimed.id == parent.id
    assert await queue.complete_many([Completion(parent.id, claimed.lease_id)]) == []
    assert await claim_ids(queue) == [child.id]


async def test_dependency_already_completed_does_not_block(queue: WorkerQueue) -> None:
    done = make_task()
    await queue.enqueue([done])
    (claimed,) = await queue.dequeue()
    await queue.mark_as_complete(claimed.id)
    child = make_task(depends_on=[done.id])
    await queue.enqueue([child])
    assert await claim_ids(queue) == [child.id]


async def test_discarded_dependency_cancels_dependents_transitively(queue: WorkerQueue) -> None:
    root = make_task("root")
    await queue.enqueue([root])
    child = make_task("child", depends_on=[root.id])
    await queue.enqueue([child])
    grandchild = make_task("grandchild", depends_on=[child.id])
    await queue.enqueue([grandchild])
    (claimed,) = await queue.dequeue()
    await queue.mark_as_discarded(claimed.id, "broken input")
    for task_id, blamed in ((child.id, root.id), (grandchild.id, child.id)):
        task = await queue.get_task(task_id)
        assert task.state is TaskState.CANCELLED
        assert task.last_error is not None
        assert blamed in task.last_error
        assert task.finished_at is not None


async def test_cancelled_dependency_cancels_dependents(queue: WorkerQueue) -> None:
    root = make_task()
    await queue.enqueue([root])
    child = make_task(depends_on=[root.id])
    await queue.enqueue([child])
    await queue.mark_as_cancelled(root.id)
    child_now = await queue.get_task(child.id)
    assert child_now.state is TaskState.CANCELLED
    assert f"dependency {root.id} ended cancelled" in (child_now.last_error or "")


async def test_exhausted_dependency_cancels_dependents(
    queue: WorkerQueue, clock: FakeClock
) -> None:
    root = make_task(max_attempts=1)
    await queue.enqueue([root])
    child = make_task(depends_on=[root.id])
    await queue.enqueue([child])
    (claimed,) = await queue.dequeue()
    await queue.mark_as_retry(claimed.id, "boom")
    await queue.retry()
    assert (await queue.get_task(child.id)).state is TaskState.CANCELLED


async def test_depending_on_an_ended_task_cancels_at_once(queue: WorkerQueue) -> None:
    root = make_task()
    await queue.enqueue([root])
    await queue.mark_as_cancelled(root.id)
    child = make_task(depends_on=[root.id])
    assert await queue.enqueue([child]) == 1
    assert (await queue.get_task(child.id)).state is TaskState.CANCELLED


async def test_unknown_dependency_refuses_the_batch(queue: WorkerQueue) -> None:
    missing = new_id()
    with pytest.raises(InvalidTaskError, match=rf"tasks\[1\]\.depends_on: no task {missing}"):
        await queue.enqueue([make_task(), make_task(depends_on=[missing])])
    assert (await queue.get_queue_stats())["total"] == 0


async def test_why_names_the_blocking_dependency(queue: WorkerQueue) -> None:
    root = make_task()
    await queue.enqueue([root])
    child = make_task(depends_on=[root.id])
    await queue.enqueue([child])
    assert await queue.why(child.id) == f"waiting on 1 dependency: {root.id} (pending)"

"""Operator and runtime operations: holds, paused queues, position and why, heartbeats,
release, progress, checkpoints, cancelling running tasks, statistics."""

from __future__ import annotations

import pytest

from tests.support import FakeClock, make_task
from worker import (
    InvalidInputError,
    InvalidStateTransitionError,
    LeaseLostError,
    Priority,
    TaskState,
    WorkerQueue,
)
from worker.core.models import Resources


async def test_held_task_is_skipped_until_unheld(queue: WorkerQueue) -> None:
    held, free = make_task("held"), make_task("free")
    await queue.enqueue([held, free])
    await queue.hold(held.id)
    assert [t.id for t in await queue.dequeue(size=10)] == [free.id]
    assert await queue.why(held.id) == "held: resume it to let it run"
    await queue.unhold(held.id)
    assert [t.id for t in await queue.dequeue(size=10)] == [held.id]
    with pytest.raises(InvalidStateTransitionError):
        await queue.hold(held.id)  # running now


async def test_a_cancel_ends_the_hold(queue: WorkerQueue) -> None:
    """A held task that is cancelled is cancelled, not "cancelled and held" (a hold on a task
    that can never run again), whether cancelled alone or in bulk."""
    alone, together = make_task("alone", held=True), make_task("together", held=True)
    await queue.enqueue([alone, together])
    assert await queue.mark_as_cancelled(alone.id) is TaskState.CANCELLED
    outcome = await queue.act_on_tasks("cancel", ids=[together.id])
    assert outcome.changed == 1
    for task_id in (alone.id, together.id):
        task = await queue.get_task(task_id)
        assert (task.state, task.held) == (TaskState.CANCELLED, False)
    with pytest.raises(InvalidStateTransitionError, match="it is cancelled,"):
        await queue.mark_as_resume(alone.id)


async def test_enqueue_held(queue: WorkerQueue) -> None:
    task = make_task(held=True)
    await queue.enqueue([task])
    assert await queue.dequeue() == []
    assert (await queue.get_task(task.id)).held


async def test_paused_queue_survives_a_new_queue_object(
    queue: WorkerQueue, clock: FakeClock
) -> None:
    audio, speech = make_task(queue="audio"), make_task(queue="speech")
    await queue.enqueue([audio, speech])
    await queue.pause_queue("audio")
    async with WorkerQueue(queue.config, clock=clock) as other:
        assert set(await other.paused_queues()) == {"audio"}
        assert [t.id for t in await other.dequeue(size=10)] == [speech.id]
        assert (await other.why(audio.id)).startswith("queue 'audio' is paused")
        assert await other.unpause_queue("audio")
        assert not await other.unpause_queue("audio")
    assert [t.id for t in await queue.dequeue(size=10)] == [audio.id]


async def test_position_and_why(queue: WorkerQueue, clock: FakeClock) -> None:
    tasks = [make_task(str(n)) for n in range(3)]
    urgent = make_task("urgent", priority=Priority.HIGH)
    later = make_task("later", schedule_at=clock.now + 90)
    other = make_task("other queue", queue="other")
    await queue.enqueue([*tasks, urgent, later, other])
    assert await queue.queue_position(urgent.id) == 0
    assert await queue.queue_position(tasks[0].id) == 1
    assert await queue.queue_position(tasks[2].id) == 3
    assert await queue.queue_position(other.id) == 0
    assert (
        await queue.why(tasks[2].id) == "position 4 in queue 'default': 3 claimable task(s) ahead"
    )
    assert (await queue.why(urgent.id)).startswith("next in queue 'default'")
    assert (await queue.why(later.id)).startswith("not due until")
    (claimed, *_) = await queue.dequeue(size=1)
    assert (await queue.why(claimed.id)).startswith("running: leased by worker test-worker until")


async def test_heartbeat_renews_many_and_reports_lost_and_cancelled(
    queue: WorkerQueue, clock: FakeClock
) -> None:
    await queue.enqueue([make_task(str(n)) for n in range(3)])
    a, b, c = await queue.dequeue(size=3)
    assert a.lease_id
    assert b.lease_id
    clock.advance(10)
    assert await queue.mark_as_cancelled(b.id) is TaskState.PROCESSING
    beat = await queue.heartbeat([(a.id, a.lease_id), (b.id, b.lease_id), (c.id, "stale")])
    assert beat.renewed == {a.id: clock.now + 30, b.id: clock.now + 30}
    assert beat.lost == [c.id]
    assert beat.cancel_requested == [b.id]
    await queue.mark_as_cancelled(b.id, lease_id=b.lease_id, reason="stopped by its worker")
    ended = await queue.get_task(b.id)
    assert ended.state is TaskState.CANCELLED
    assert ended.last_error == "stopped by its worker"


async def test_cancel_requested_task_whose_worker_died_ends_cancelled(
    queue: WorkerQueue, clock: FakeClock
) -> None:
    await queue.enqueue([make_task()])
    (claimed,) = await queue.dequeue()
    await queue.mark_as_cancelled(claimed.id)
    clock.advance(31)
    (swept,) = await queue.retry()
    assert swept.state is TaskState.CANCELLED


async def test_release_gives_the_attempt_back(queue: WorkerQueue, clock: FakeClock) -> None:
    await queue.enqueue([make_task()])
    (claimed,) = await queue.dequeue()
    assert claimed.lease_id
    assert await queue.release([(claimed.id, claimed.lease_id)]) == [claimed.id]
    again = await queue.get_task(claimed.id)
    assert again.state is TaskState.PENDING
    assert again.attempt_count == 0
    assert again.schedule_at == clock.now
    assert await queue.release([(claimed.id, claimed.lease_id)]) == []
    (reclaimed,) = await queue.dequeue()
    assert reclaimed.attempt_count == 1


async def test_progress_and_checkpoint_are_fenced_and_kept(
    queue: WorkerQueue, clock: FakeClock
) -> None:
    await queue.enqueue([make_task()])
    (claimed,) = await queue.dequeue()
    assert claimed.lease_id
    progress = await queue.set_progress(claimed.id, claimed.lease_id, 3, 10, "sentence 3")
    await queue.save_checkpoint(claimed.id, claimed.lease_id, {"done": [0, 1, 2]})
    stored = await queue.get_task(claimed.id)
    assert stored.progress == progress
    assert stored.progress is not None
    assert (stored.progress.current, stored.progress.total) == (3, 10)
    assert stored.checkpoint == {"done": [0, 1, 2]}
    with pytest.raises(LeaseLostError):
        await queue.set_progress(claimed.id, "stale", 4, 10)
    await queue.mark_as_retry(claimed.id, "crash", lease_id=claimed.lease_id)
    await queue.retry()
    clock.advance(100)
    (second,) = await queue.dequeue()
    assert second.checkpoint == {"done": [0, 1, 2]}, "a retried attempt reads it back"


async def test_statistics(queue: WorkerQueue, clock: FakeClock) -> None:
    await queue.enqueue([make_task(str(n)) for n in range(5)])
    a, b, c = await queue.dequeue(size=3)
    clock.advance(2)
    await queue.mark_as_complete(a.id)
    clock.advance(2)
    await queue.mark_as_complete(b.id)
    await queue.mark_as_discarded(c.id, "bad")
    await queue.register_worker(
        {"id": "w1", "hostname": "h", "pid": 1, "queues": None, "concurrency": 2}
    )
    stats = await queue.get_statistics(window_s=60)
    assert stats["states"]["completed"] == 2
    assert stats["states"]["pending"] == 2
    assert stats["queues"] == {"default": {"completed": 2, "discarded": 1, "pending": 2}}
    assert stats["completed"] == 2
    assert stats["throughput_per_s"] == pytest.approx(2 / 60)
    assert stats["avg_processing_s"] == pytest.approx(3.0)
    assert stats["p95_processing_s"] == pytest.approx(4.0)
    assert stats["success_rate"] == pytest.approx(2 / 3)
    assert stats["oldest_pending_age_s"] == pytest.approx(4.0)
    assert stats["workers_alive"] == 1
    await queue.worker_heartbeat("w1", stopped=True)
    assert (await queue.get_statistics())["workers_alive"] == 0


async def test_claims_only_what_fits_in_the_free_resources(queue: WorkerQueue) -> None:
    gib = 1 << 30
    big = make_task("big", resources=Resources(memory_bytes=6 * gib))
    medium = [make_task(f"m{n}", resources=Resources(memory_bytes=2 * gib)) for n in range(3)]
    gpu = make_task("gpu", resources=Resources(gpu=True, cpu=1))
    small = make_task("small")
    await queue.enqueue([big, *medium, gpu, small])
    got = await queue.dequeue(size=10, resources=Resources(memory_bytes=5 * gib, cpu=4))
    assert [t.id for t in got] == [medium[0].id, medium[1].id, small.id]
    # the third medium task fitted alone but not together: given back, attempt unused
    third = await queue.get_task(medium[2].id)
    assert third.state is TaskState.PENDING
    assert third.attempt_count == 0
    rest = await queue.dequeue(size=10, resources=Resources(memory_bytes=8 * gib, cpu=1, gpu=True))
    assert [t.id for t in rest] == [big.id, medium[2].id, gpu.id]
    assert await queue.dequeue(size=10) == []


async def test_a_run_asked_to_stop_is_not_retried(queue: WorkerQueue) -> None:
    await queue.enqueue([make_task()])
    (claimed,) = await queue.dequeue()
    await queue.mark_as_cancelled(claimed.id)
    await queue.mark_as_retry(claimed.id, "interrupted", lease_id=claimed.lease_id)
    ended = await queue.get_task(claimed.id)
    assert ended.state is TaskState.CANCELLED
    assert ended.finished_at is not None


async def test_retry_delay_must_be_finite_and_not_negative(queue: WorkerQueue) -> None:
    await queue.enqueue([make_task()])
    (claimed,) = await queue.dequeue()
    for bad in (float("nan"), float("inf"), -50.0):
        with pytest.raises(InvalidInputError, match="delay_s"):
            await queue.mark_as_retry(claimed.id, "x", delay_s=bad)
    assert (await queue.get_task(claimed.id)).state is TaskState.PROCESSING


async def test_a_refused_cancel_names_every_state_a_cancel_takes(queue: WorkerQueue) -> None:
    task = make_task("x")
    await queue.enqueue([task])
    await queue.mark_as_cancelled(task.id)
    with pytest.raises(InvalidStateTransitionError) as refused:
        await queue.mark_as_cancelled(task.id)
    # A running task can be cancelled too (its worker is asked to stop it): say so.
    assert str(refused.value) == (
        f"cannot cancel task {task.id!r}: it is cancelled, cancel needs pending, retryable "
        "or processing"
    )

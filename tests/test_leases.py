"""Visibility timeouts, lease renewal and fencing, on a fake clock."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import JsonValue

from tests.support import FakeClock, database_of, make_task
from worker import (
    Completion,
    Failure,
    InvalidStateTransitionError,
    LeaseLostError,
    TaskState,
    WorkerQueue,
)
from worker.runtime.acks import AckBuffer
from worker.runtime.events import EventBus
from worker.runtime.execute import Outcome
from worker.storage.enqueue_claim import _claimed_rows
from worker.storage.sweep import EXPIRED_ERROR


async def test_claimed_task_is_invisible_until_its_lease_expires(
    queue: WorkerQueue, clock: FakeClock
) -> None:
    task = make_task()
    await queue.enqueue([task])
    (first,) = await queue.dequeue(size=10)
    assert first.state is TaskState.PROCESSING
    assert first.lease_expires_at == clock.now + 30
    assert first.worker_id == "test-worker"

    clock.advance(29)
    assert await queue.dequeue(size=10) == []
    assert await queue.retry() == [], "the lease has not expired"

    clock.advance(1)
    (swept,) = await queue.retry()
    assert swept.id == task.id
    assert swept.state is TaskState.PENDING
    assert swept.expired_count == 1
    assert swept.last_error == EXPIRED_ERROR
    assert swept.errors[-1].expired
    assert swept.schedule_at >= clock.now + 10, "backoff applies after an expiry too"

    clock.advance(20)
    (second,) = await queue.dequeue(size=10)
    assert second.attempt_count == 2
    assert second.lease_id != first.lease_id


async def test_per_task_visibility_timeout(queue: WorkerQueue, clock: FakeClock) -> None:
    await queue.enqueue([make_task(visibility_timeout=5)])
    (claimed,) = await queue.dequeue()
    assert claimed.lease_expires_at == clock.now + 5


async def test_sweep_visibility_timeout_override(queue: WorkerQueue, clock: FakeClock) -> None:
    await queue.enqueue([make_task()])
    await queue.dequeue()
    clock.advance(6)
    assert await queue.retry(visibility_timeout=10) == []
    (swept,) = await queue.retry(visibility_timeout=5)
    assert swept.expired_count == 1


async def test_extend_lease_keeps_a_long_task_with_its_worker(
    queue: WorkerQueue, clock: FakeClock
) -> None:
    await queue.enqueue([make_task()])
    (claimed,) = await queue.dequeue()
    assert claimed.lease_id is not None
    for _ in range(9):  # runs nine times its timeout, renewing at a third of it
        clock.advance(10)
        expires = await queue.extend_lease(claimed.id, claimed.lease_id)
        assert expires == clock.now + 30
        assert await queue.retry() == []
    await queue.mark_as_complete(claimed.id, lease_id=claimed.lease_id)
    assert (await queue.get_task(claimed.id)).attempt_count == 1


async def test_fencing_after_reclaim(queue: WorkerQueue, clock: FakeClock) -> None:
    await queue.enqueue([make_task()])
    (first,) = await queue.dequeue()
    clock.advance(31)
    await queue.retry()
    clock.advance(100)
    (second,) = await queue.dequeue()
    assert second.id == first.id
    assert first.lease_id is not None
    assert second.lease_id is not None

    with pytest.raises(LeaseLostError) as lost:
        await queue.mark_as_complete(first.id, lease_id=first.lease_id)
    assert isinstance(lost.value, InvalidStateTransitionError)
    assert first.lease_id in str(lost.value)
    for stale in (
        queue.mark_as_retry(first.id, "late", lease_id=first.lease_id),
        queue.mark_as_discarded(first.id, "late", lease_id=first.lease_id),
        queue.extend_lease(first.id, first.lease_id),
    ):
        with pytest.raises(LeaseLostError):
            await stale

    still = await queue.get_task(first.id)
    assert still.state is TaskState.PROCESSING
    assert still.lease_id == second.lease_id
    assert still.last_error == EXPIRED_ERROR, "stale writes changed nothing"
    await queue.mark_as_complete(second.id, lease_id=second.lease_id)
    assert (await queue.get_task(first.id)).state is TaskState.COMPLETED


@pytest.mark.parametrize("results", [None, ["late"]], ids=["plain", "with-results"])
async def test_one_batch_with_a_stale_and_a_current_ack_of_a_task_refuses_the_stale_one(
    queue: WorkerQueue, clock: FakeClock, results: list[JsonValue] | None
) -> None:
    """Two acks of one task in one batch (a lost claim's, and the claim that took it): only
    the one whose lease the row holds is written, and the other is reported refused."""
    await queue.enqueue([make_task()])
    (first,) = await queue.dequeue()
    clock.advance(31)
    await queue.retry()
    clock.advance(100)
    (second,) = await queue.dequeue()
    refused = await queue.complete_many(
        [
            Completion(first.id, first.lease_id, results=results),
            Completion(second.id, second.lease_id, results=["current"]),
        ]
    )
    assert refused == [first.id]
    done = await queue.get_task(first.id)
    assert done.state is TaskState.COMPLETED
    assert done.items[0].result == "current"

    await queue.enqueue([make_task("again")])
    (third,) = await queue.dequeue()
    clock.advance(31)
    await queue.retry()
    clock.advance(100)
    (fourth,) = await queue.dequeue()
    refused = await queue.retry_many(
        [Failure(fourth.id, "current", fourth.lease_id), Failure(third.id, "stale", third.lease_id)]
    )
    assert refused == [third.id]
    assert (await queue.get_task(third.id)).last_error == "current"


async def test_a_worker_holding_a_lost_and_a_current_claim_of_a_task_reports_one(
    queue: WorkerQueue, clock: FakeClock
) -> None:
    """A worker frozen after its claim, presumed dead, and then handed the task again, may
    buffer outcomes of both runs: the lost claim's is refused, the task completes once."""
    await queue.enqueue([make_task()])
    (first,) = await queue.dequeue()
    clock.advance(31)
    await queue.retry()
    clock.advance(100)
    (second,) = await queue.dequeue()
    events = EventBus()
    completed: list[tuple[str, int]] = []
    events.register("task_completed", lambda e: completed.append((e.task.id, e.task.attempt_count)))
    acks = AckBuffer(queue, events)
    acks.outcome(second, Outcome("complete", results=["current"]))
    acks.outcome(first, Outcome("complete", results=["stale"]))
    await acks.flush()
    assert completed == [(second.id, 2)]
    assert (acks.counts["completed"], acks.counts["refused"]) == (1, 1)
    assert (await queue.get_task(first.id)).items[0].result == "current"


async def test_a_claims_read_back_reads_only_rows_that_still_hold_its_leases(
    queue: WorkerQueue, clock: FakeClock
) -> None:
    """A task that is not plain (here: it expired once) is read back whole after its claim;
    on PostgreSQL that read is a statement of its own, so a worker paused between the two
    must not read back a row another claim took meanwhile, with that claim's lease."""
    await queue.enqueue([make_task()])
    await queue.dequeue()
    clock.advance(31)
    await queue.retry()
    clock.advance(100)
    (lost,) = await queue.dequeue()  # unusual now: it carries the expiry's error
    clock.advance(31)
    await queue.retry()
    clock.advance(100)
    (current,) = await queue.dequeue()
    assert lost.lease_id is not None
    assert current.lease_id is not None
    database = database_of(queue)
    read_back = database.statements.of(_claimed_rows)
    found: dict[str, list[Any]] = {}
    async with database.read("test") as conn:
        for name, claim in (("lost", lost), ("current", current)):
            prefix = str(claim.lease_id).removesuffix(claim.id)
            result = await conn.exec_driver_sql(
                read_back.sql, read_back.params(ids=json.dumps([claim.id]), lease_prefix=prefix)
            )
            found[name] = list(result.all())
    assert found["lost"] == []
    assert [row[0] for row in found["current"]] == [current.id]


async def test_stale_lease_after_expiry_before_reclaim(
    queue: WorkerQueue, clock: FakeClock
) -> None:
    await queue.enqueue([make_task()])
    (claimed,) = await queue.dequeue()
    assert claimed.lease_id is not None
    clock.advance(31)
    await queue.retry()
    with pytest.raises(LeaseLostError):
        await queue.mark_as_complete(claimed.id, lease_id=claimed.lease_id)


async def test_batch_acknowledgement_reports_lost_leases(
    queue: WorkerQueue, clock: FakeClock
) -> None:
    await queue.enqueue([make_task(str(n)) for n in range(5)])
    claimed = await queue.dequeue(size=5)
    stale = claimed[0]
    clock.advance(31)
    await queue.extend_lease(claimed[1].id, claimed[1].lease_id or "")
    await queue.extend_lease(claimed[2].id, claimed[2].lease_id or "")
    await queue.extend_lease(claimed[3].id, claimed[3].lease_id or "")
    await queue.extend_lease(claimed[4].id, claimed[4].lease_id or "")
    await queue.retry()  # only the first task's lease expired
    refused = await queue.complete_many(
        [Completion(t.id, t.lease_id, results=[t.id]) for t in claimed[:3]]
    )
    assert refused == [stale.id]
    assert await queue.retry_many([Failure(claimed[3].id, "e", claimed[3].lease_id)]) == []
    assert await queue.retry_many([Failure(claimed[3].id, "e", claimed[3].lease_id)]) == [
        claimed[3].id
    ]
    states = {t.id: (await queue.get_task(t.id)) for t in claimed}
    assert states[stale.id].state is TaskState.PENDING
    assert states[claimed[1].id].state is TaskState.COMPLETED
    assert states[claimed[1].id].items[0].result == claimed[1].id
    assert states[claimed[3].id].state is TaskState.RETRYABLE
    assert states[claimed[4].id].state is TaskState.PROCESSING


async def test_sweep_requeues_with_backoff_then_discards(
    queue: WorkerQueue, clock: FakeClock
) -> None:
    task = make_task()  # the config allows 3 attempts
    await queue.enqueue([task])
    delays = []
    for _ in range(2):
        (claimed,) = await queue.dequeue()
        await queue.mark_as_retry(claimed.id, "boom")
        (swept,) = await queue.retry()
        assert swept.state is TaskState.PENDING
        delays.append(swept.schedule_at - clock.now)
        assert await queue.dequeue() == [], "not due until the backoff has passed"
        clock.advance(swept.schedule_at - clock.now)
    assert 10 <= delays[0] <= 11
    assert 20 <= delays[1] <= 22
    (claimed,) = await queue.dequeue()
    assert claimed.attempt_count == 3
    await queue.mark_as_retry(claimed.id, "boom")
    (swept,) = await queue.retry()
    assert swept.state is TaskState.DISCARDED
    assert swept.finished_at == clock.now


async def test_retry_delay_overrides_backoff(queue: WorkerQueue, clock: FakeClock) -> None:
    await queue.enqueue([make_task()])
    (claimed,) = await queue.dequeue()
    await queue.mark_as_retry(claimed.id, "rate limited", delay_s=2.5)
    (swept,) = await queue.retry()
    assert swept.schedule_at == clock.now + 2.5


async def test_sweep_max_attempts_override(queue: WorkerQueue) -> None:
    await queue.enqueue([make_task()])
    (claimed,) = await queue.dequeue()
    await queue.mark_as_retry(claimed.id, "boom")
    (swept,) = await queue.retry(max_attempts=1)
    assert swept.state is TaskState.DISCARDED


async def test_two_queue_objects_sweep_without_double_moves(
    queue: WorkerQueue, clock: FakeClock
) -> None:
    other = WorkerQueue(queue.config, worker_id="other", clock=clock)
    async with other:
        await queue.enqueue([make_task(str(n)) for n in range(50)])
        claimed = await queue.dequeue(size=50)
        clock.advance(31)
        first = await queue.retry(size=1000)
        second = await other.retry(size=1000)
    assert {t.id for t in first} == {t.id for t in claimed}
    assert second == []
    stored = [await queue.get_task(t.id) for t in claimed]
    assert {t.expired_count for t in stored} == {1}

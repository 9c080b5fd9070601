"""The persisted history (``task_history``): written by acknowledgements, read as series,
surviving ``purge``; p50/p95 estimated from its log-scale buckets."""

from __future__ import annotations

import pytest

from tests.support import FakeClock, make_task
from worker.core.errors import InvalidInputError
from worker.core.models import Completion, Failure
from worker.queue.worker_queue import WorkerQueue
from worker.storage.history import bucket_of, quantile
from worker.storage.schema import HISTORY_BOUNDS, HISTORY_BUCKETS


async def _run(queue: WorkerQueue, clock: FakeClock, name: str, n: int, seconds: float) -> None:
    await queue.enqueue([make_task(queue=name) for _ in range(n)])
    claimed = await queue.dequeue(size=n, queues=[name])
    assert len(claimed) == n
    clock.advance(seconds)
    await queue.complete_many([Completion(t.id, t.lease_id) for t in claimed[:-1]])
    last = claimed[-1]
    await queue.discard_many([Failure(last.id, "boom", last.lease_id)])


async def test_acknowledgements_are_counted_per_queue_and_outcome(
    queue: WorkerQueue, clock: FakeClock
) -> None:
    await _run(queue, clock, "a", 5, 2.0)
    await _run(queue, clock, "b", 3, 0.1)
    points = await queue.history("hour")
    assert len(points) == 60
    assert points[-1].outcomes == {"completed": 6, "discarded": 2}
    assert sum(sum(p.outcomes.values()) for p in points[:-1]) == 0
    only_a = (await queue.history("hour", queue="a"))[-1]
    assert only_a.outcomes == {"completed": 4, "discarded": 1}
    # Every task of "a" took 2 s: the estimate falls in the bucket holding 2 s.
    assert only_a.p50_s is not None
    assert 1.024 < only_a.p50_s <= 2.048
    assert only_a.mean_s == pytest.approx(2.0)
    totals = await queue.history_totals()
    assert totals.counts == {
        ("a", "completed"): 4,
        ("a", "discarded"): 1,
        ("b", "completed"): 2,
        ("b", "discarded"): 1,
    }


async def test_history_survives_purge_and_a_reopened_queue(
    queue: WorkerQueue, clock: FakeClock
) -> None:
    await _run(queue, clock, "a", 4, 0.5)
    clock.advance(120)
    assert await queue.purge(older_than_s=60) == 4
    async with WorkerQueue(queue.config, clock=clock) as again:
        points = await again.history("hour", queue="a")
    assert sum(p.outcomes.get("completed", 0) for p in points) == 3
    day = await queue.history("day")
    assert len(day) == 96
    assert sum(p.outcomes.get("discarded", 0) for p in day) == 1


async def test_a_retry_and_later_minutes_are_their_own_rows(
    queue: WorkerQueue, clock: FakeClock
) -> None:
    await queue.enqueue([make_task(queue="a")])
    [task] = await queue.dequeue(size=1)
    await queue.retry_many([Failure(task.id, "again", task.lease_id, 0.0)])
    clock.advance(60)
    await queue.retry()
    [task] = await queue.dequeue(size=1)
    await queue.complete_many([Completion(task.id, task.lease_id)])
    points = await queue.history("hour")
    assert points[-2].outcomes == {"retryable": 1}
    assert points[-1].outcomes == {"completed": 1}


async def test_a_bad_window_is_refused(queue: WorkerQueue) -> None:
    with pytest.raises(InvalidInputError, match="window must be one of hour, day"):
        await queue.history("week")


def test_quantiles_from_buckets() -> None:
    assert quantile([0] * len(HISTORY_BUCKETS), 0.5) is None
    counts = [0] * len(HISTORY_BUCKETS)
    counts[bucket_of(0.3)] = 90
    counts[bucket_of(30.0)] = 10
    p50, p95 = quantile(counts, 0.5), quantile(counts, 0.95)
    assert p50 is not None
    assert 0.256 < p50 <= 0.512
    assert p95 is not None
    assert 16.384 < p95 <= 32.768
    assert bucket_of(HISTORY_BOUNDS[-1] * 10) == len(HISTORY_BUCKETS) - 1

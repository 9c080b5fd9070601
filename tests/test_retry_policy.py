"""Per-task retry policies: pure scheduling, and the sweep applying them."""

from __future__ import annotations

import pytest

from tests.support import FakeClock, make_task
from worker import TaskState, WorkerQueue
from worker.core.backoff import next_attempt_at
from worker.core.models import RetryPolicy


def at(policy: RetryPolicy | None, attempt: int, *, requested: float | None = None) -> float | None:
    return next_attempt_at(
        attempt=attempt,
        now=1000.0,
        created_at=900.0,
        policy=policy,
        requested_delay_s=requested,
        base_delay_s=10,
        multiplier=2,
        max_delay_s=100,
        rng=Zero(),
    )


class Zero:
    def random(self) -> float:
        return 0.0


def test_default_is_the_queue_backoff() -> None:
    assert [at(None, n) for n in (1, 2, 3, 6)] == [1010, 1020, 1040, 1100]


def test_exponential_overrides_only_what_it_sets() -> None:
    policy = RetryPolicy(kind="exponential", base_delay_s=1)
    assert [at(policy, n) for n in (1, 2, 3)] == [1001, 1002, 1004]


def test_fixed_and_delays() -> None:
    assert at(RetryPolicy(kind="fixed", delay_s=7), 5) == 1007
    delays = RetryPolicy(kind="delays", delays_s=[1, 5, 30])
    assert [at(delays, n) for n in (1, 2, 3, 4, 9)] == [1001, 1005, 1030, 1030, 1030]


def test_deadline_stops_retries() -> None:
    policy = RetryPolicy(kind="fixed", delay_s=50, deadline_s=149)
    assert at(policy, 1) is None  # 1050 > 900 + 149
    assert at(RetryPolicy(kind="fixed", delay_s=50, deadline_s=150), 1) == 1050


def test_requested_delay_wins_but_not_over_the_deadline() -> None:
    assert at(RetryPolicy(kind="fixed", delay_s=50), 1, requested=3) == 1003
    assert at(RetryPolicy(kind="fixed", delay_s=1, deadline_s=100), 1, requested=200) is None


def test_incomplete_policies_are_refused() -> None:
    with pytest.raises(ValueError, match="delay_s"):
        RetryPolicy(kind="fixed")
    with pytest.raises(ValueError, match="delays_s"):
        RetryPolicy(kind="delays")


async def test_sweep_applies_the_tasks_policy(queue: WorkerQueue, clock: FakeClock) -> None:
    fixed = make_task("fixed", retry_policy=RetryPolicy(kind="fixed", delay_s=2.5), max_attempts=5)
    listed = make_task("delays", retry_policy=RetryPolicy(kind="delays", delays_s=[4, 9]))
    await queue.enqueue([fixed, listed])
    for _ in range(2):
        for task in await queue.dequeue(size=10):
            await queue.mark_as_retry(task.id, "boom")
        swept = {t.id: t for t in await queue.retry()}
        assert swept[fixed.id].schedule_at == clock.now + 2.5
        waited = swept[listed.id].schedule_at - clock.now
        assert waited in (4, 9)
        clock.advance(10)
    assert (await queue.get_task(listed.id)).schedule_at == clock.now - 10 + 9


async def test_sweep_discards_past_the_deadline(queue: WorkerQueue, clock: FakeClock) -> None:
    task = make_task(retry_policy=RetryPolicy(kind="fixed", delay_s=60, deadline_s=30))
    await queue.enqueue([task])
    (claimed,) = await queue.dequeue()
    await queue.mark_as_retry(claimed.id, "boom")
    (swept,) = await queue.retry()
    assert swept.state is TaskState.DISCARDED
    assert swept.last_error == "boom (no retry: past the retry policy's deadline)"

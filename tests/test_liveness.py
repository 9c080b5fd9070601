"""Worker liveness: heartbeats in the registry, and the sweep of dead workers' tasks.

A fake clock drives the sweep; the database is a real file. A worker is dead once its
heartbeat is older than ``worker_dead_after``: its running tasks come back at once, whatever
their visibility timeout (an hour here, the default), and its late acknowledgements are
refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support import FakeClock, make_task
from worker import LeaseLostError, QueueConfig, TaskState, WorkerQueue
from worker.storage.sweep import WORKER_RETENTION_S


@pytest.fixture
async def live(database_url: str, clock: FakeClock) -> AsyncIterator[WorkerQueue]:
    config = QueueConfig(database_url=database_url, retry_base_delay=60.0)
    assert config.default_visibility_timeout == 3600  # the default: liveness must not wait it out
    async with WorkerQueue(config, clock=clock) as queue:
        yield queue


def worker_row(worker_id: str) -> dict[str, Any]:
    return {"id": worker_id, "hostname": "h", "pid": 1, "queues": None, "concurrency": 1}


async def test_a_silent_workers_tasks_come_back_at_once(
    live: WorkerQueue, clock: FakeClock
) -> None:
    await live.register_worker(worker_row("w1"))
    await live.enqueue([make_task()])
    (claimed,) = await live.dequeue(worker_id="w1")
    assert claimed.worker_id == "w1"
    assert claimed.lease_id
    dead_after = live.config.worker_dead_after
    clock.advance(dead_after - 1)
    assert await live.retry() == []  # not silent for long enough yet
    clock.advance(2)
    (back,) = await live.retry()
    assert back.state is TaskState.PENDING
    assert back.schedule_at == clock.now  # no backoff: the task did not fail, its worker died
    assert back.expired_count == 1
    assert back.attempt_count == 1  # the attempt that died is counted
    assert back.last_error == "worker w1 stopped sending heartbeats (presumed dead)"
    assert back.errors[-1].expired
    assert back.errors[-1].worker == "w1"  # the attempt names the worker that died
    with pytest.raises(LeaseLostError):
        await live.mark_as_complete(claimed.id, lease_id=claimed.lease_id)
    (again,) = await live.dequeue(worker_id="w2")
    assert again.id == claimed.id
    assert again.attempt_count == 2


async def test_a_beating_worker_keeps_its_tasks(live: WorkerQueue, clock: FakeClock) -> None:
    await live.register_worker(worker_row("w1"))
    await live.enqueue([make_task()])
    (claimed,) = await live.dequeue(worker_id="w1")
    assert claimed.lease_id
    for _ in range(10):
        clock.advance(live.config.heartbeat_interval)
        report = await live.worker_alive("w1", [(claimed.id, claimed.lease_id)])
        assert report is not None
        assert report.lost == []
        assert report.cancel_requested == []
        assert await live.retry() == []
    assert (await live.get_task(claimed.id)).state is TaskState.PROCESSING


async def test_tasks_of_no_registered_worker_wait_for_their_lease(
    live: WorkerQueue, clock: FakeClock
) -> None:
    await live.enqueue([make_task()])
    await live.dequeue(worker_id="someone")  # never registered: no heartbeat
    clock.advance(600)
    assert await live.retry() == []
    clock.advance(3000)
    (back,) = await live.retry()
    assert back.last_error == "visibility timeout expired"
    assert back.state is TaskState.PENDING
    assert back.schedule_at > clock.now  # a lease that expired backs off as before


async def test_a_worker_that_said_it_stopped_leaves_nothing_running(
    live: WorkerQueue, clock: FakeClock
) -> None:
    await live.register_worker(worker_row("w1"))
    await live.enqueue([make_task()])
    (claimed,) = await live.dequeue(worker_id="w1")
    await live.worker_heartbeat("w1", stopped=True)  # e.g. its acknowledgements were lost
    (back,) = await live.retry()
    assert back.id == claimed.id
    assert back.state is TaskState.PENDING


async def test_a_cancel_asked_of_a_dead_workers_task_ends_it(
    live: WorkerQueue, clock: FakeClock
) -> None:
    await live.register_worker(worker_row("w1"))
    await live.enqueue([make_task()])
    (claimed,) = await live.dequeue(worker_id="w1")
    assert await live.mark_as_cancelled(claimed.id) is TaskState.PROCESSING
    clock.advance(live.config.worker_dead_after + 1)
    (ended,) = await live.retry()
    assert ended.state is TaskState.CANCELLED


async def test_the_beat_reports_lost_claims_and_cancels(
    live: WorkerQueue, clock: FakeClock
) -> None:
    await live.register_worker(worker_row("w1"))
    await live.enqueue([make_task(str(n)) for n in range(3)])
    a, b, c = await live.dequeue(size=3, worker_id="w1")
    assert a.lease_id
    assert b.lease_id
    assert c.lease_id
    await live.mark_as_cancelled(b.id)
    await live.mark_as_complete(c.id, lease_id=c.lease_id)  # ended meanwhile: no longer held
    leases = [(a.id, a.lease_id), (b.id, b.lease_id), (c.id, c.lease_id), (a.id + "x", "l")]
    report = await live.worker_alive("w1", leases)
    assert report is not None
    assert report.lost == [c.id, a.id + "x"]
    assert report.cancel_requested == [b.id]
    assert await live.lease_report(leases) == report  # the same, read without a write


async def test_a_pruned_worker_is_told_to_register_again(
    live: WorkerQueue, clock: FakeClock
) -> None:
    await live.register_worker(worker_row("idle"))
    await live.register_worker(worker_row("busy"))
    await live.enqueue([make_task()])
    await live.dequeue(worker_id="busy")
    clock.advance(WORKER_RETENTION_S + 1)
    await live.worker_alive("busy", [])  # alive again, and holding its task
    await live.retry()
    assert await live.worker_alive("idle", []) is None  # silent a day, holding nothing: gone
    assert await live.worker_alive("busy", []) is not None
    assert [w["id"] for w in await live.live_workers()] == ["busy"]


async def test_each_attempt_names_its_worker_and_workers_count_their_running_tasks(
    live: WorkerQueue, clock: FakeClock
) -> None:
    for worker_id in ("w1", "w2", "idle"):
        await live.register_worker(worker_row(worker_id))
    await live.enqueue([make_task() for _ in range(3)])
    (a,) = await live.dequeue(1, worker_id="w1")
    (b, _) = await live.dequeue(2, worker_id="w2")
    running = {w["id"]: w["running"] for w in await live.live_workers()}
    assert running == {"w1": 1, "w2": 2, "idle": 0}

    await live.mark_as_retry(a.id, "boom", lease_id=a.lease_id, delay_s=0)
    await live.mark_as_complete(b.id, lease_id=b.lease_id)
    running = {w["id"]: w["running"] for w in await live.live_workers()}
    assert running == {"w1": 0, "w2": 1, "idle": 0}

    await live.retry()
    (again,) = await live.dequeue(1, worker_id="w2")
    assert again.id == a.id
    await live.mark_as_discarded(again.id, "boom again", lease_id=again.lease_id)
    got = await live.get_task(a.id)
    assert got is not None
    assert [(e.attempt, e.error, e.worker) for e in got.errors] == [
        (1, "boom", "w1"),
        (2, "boom again", "w2"),
    ]

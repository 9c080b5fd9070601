"""On PostgreSQL the queue decides with the database server's clock, so machines whose
clocks disagree still agree on leases, schedules and the sweep (worker.core.clock)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from tests.support import make_task
from worker import QueueConfig, TaskState, WorkerQueue
from worker.core import clock as clock_module

REAL = time.time


def skewed(monkeypatch: pytest.MonkeyPatch, seconds: float) -> Callable[[], float]:
    """Make this process's clock run ``seconds`` off (as another machine's could)."""
    fake = lambda: REAL() + seconds  # noqa: E731
    monkeypatch.setattr(time, "time", fake)
    return fake


def config(url: str, **fields: object) -> QueueConfig:
    return QueueConfig(**{"database_url": url, "default_visibility_timeout": 10.0, **fields})


async def test_a_skewed_machine_reads_the_servers_time(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    skewed(monkeypatch, 30.0)
    async with WorkerQueue(config(postgres_url)) as queue:
        assert abs(queue.clock() - REAL()) < 0.5
        await queue.enqueue([make_task()])
        [task] = await queue.dequeue(1)
        assert abs(task.created_at - REAL()) < 0.5
        assert task.lease_expires_at is not None
        assert abs(task.lease_expires_at - (REAL() + 10.0)) < 0.5


@pytest.mark.parametrize("database_clock", [True, False])
async def test_a_sweep_ahead_of_time_leaves_live_leases_alone(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, database_clock: bool
) -> None:
    """A machine 30 s ahead sweeps while another holds a 10 s lease it took just now: with
    the database's clock the lease stays; with its own (the setting off) it is expired."""
    async with WorkerQueue(config(postgres_url)) as holder:
        await holder.enqueue([make_task()])
        [task] = await holder.dequeue(1)
        skewed(monkeypatch, 30.0)
        ahead = WorkerQueue(config(postgres_url, database_clock=database_clock))
        async with ahead:
            moved = await ahead.retry(size=10)
        stored = await holder.get_task(task.id)
    if database_clock:
        assert moved == []
        assert stored.state is TaskState.PROCESSING
    else:  # what the database clock prevents
        assert [t.id for t in moved] == [task.id]
        assert stored.state is not TaskState.PROCESSING


async def test_a_machine_behind_time_does_not_keep_a_dead_lease(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lease that expired on the server's clock is swept by a machine 30 s behind."""
    async with WorkerQueue(config(postgres_url, default_visibility_timeout=0.2)) as holder:
        await holder.enqueue([make_task()])
        [task] = await holder.dequeue(1)
    await asyncio.sleep(max(0.0, (task.lease_expires_at or 0) + 0.05 - REAL()))  # it expires
    skewed(monkeypatch, -30.0)
    async with WorkerQueue(config(postgres_url)) as behind:
        moved = await behind.retry(size=10)
    assert [t.id for t in moved] == [task.id]


async def test_the_offset_is_measured_again_as_time_goes_on(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(clock_module, "REMEASURE_S", 0.0)
    async with WorkerQueue(config(postgres_url)) as queue:
        assert abs(queue.clock() - REAL()) < 0.5
        skewed(monkeypatch, -30.0)  # the machine's clock is stepped back
        queue.clock()  # starts a measurement in the background
        for _ in range(100):
            if abs(queue.clock() - REAL()) < 0.5:
                break
            await asyncio.sleep(0.02)
        assert abs(queue.clock() - REAL()) < 0.5


async def test_sqlite_and_a_given_clock_are_used_as_they_are(
    db_path: object, postgres_url: str
) -> None:
    async with WorkerQueue(QueueConfig(database_url=f"sqlite+aiosqlite:///{db_path}")) as q:
        assert q.clock is time.time
    given = lambda: 5.0  # noqa: E731
    async with WorkerQueue(config(postgres_url), clock=given) as q:
        assert q.clock is given

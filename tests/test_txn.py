"""Hot-path transactions: one trip to aiosqlite's thread each, and the same bodies through
SQLAlchemy on drivers without that thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from tests.support import FakeClock, database_of, make_task
from worker import (
    Completion,
    DuplicateTaskError,
    InvalidInputError,
    QueueConfig,
    TaskState,
    WorkerQueue,
)
from worker.storage import database as db_module
from worker.storage.database import Database

pytestmark = pytest.mark.sqlite_only(
    "the hot path's trips to aiosqlite's thread and SQLite's write lock"
)


def _count_trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The transactions (worker.storage.sqlite.driver's runners) sent to aiosqlite's thread
    from now on."""
    trips: list[str] = []
    original: Callable[..., Any] = aiosqlite.Connection._execute

    async def counted(
        self: aiosqlite.Connection, fn: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        if getattr(fn, "__module__", None) == "worker.storage.sqlite.driver":
            trips.append(fn.__name__)
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return trips


async def test_small_transactions_run_on_the_loop_and_big_ones_take_one_trip(
    queue: WorkerQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    await database_of(queue)._writer_driver()  # made on first use, with pragmas of its own
    trips = _count_trips(monkeypatch)
    await queue.enqueue([make_task(str(n)) for n in range(5)])
    batch = await queue.dequeue(size=5)
    assert len(batch) == 5
    assert await queue.complete_many([Completion(t.id, t.lease_id) for t in batch]) == []
    assert trips == [], "no trip to the driver's thread"
    big = queue.config.sqlite_inline_rows + 1
    await queue.enqueue([make_task(str(n)) for n in range(big)])
    assert trips == ["run_waiting"]
    trips.clear()
    assert len(await queue.dequeue(size=big)) == big
    assert trips == ["run_waiting"]


@pytest.mark.parametrize(
    "setting",
    [
        {"sqlite_inline_rows": 0},
        {"sqlite_synchronous": "FULL"},
        {"sqlite_checkpoint_interval": 0},
    ],
)
async def test_every_transaction_takes_one_trip_when_none_may_run_inline(
    config: QueueConfig, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, setting: Any
) -> None:
    """Inline transactions are off (0), or a commit could sync the disk on the loop's thread
    (FULL; a checkpoint inside the commit, as SQLite's own are)."""
    async with WorkerQueue(config.model_copy(update=setting), clock=clock) as queue:
        await database_of(queue)._writer_driver()
        trips = _count_trips(monkeypatch)
        await queue.enqueue([make_task(str(n)) for n in range(5)])
        assert trips == ["run_in_driver"]
        trips.clear()
        batch = await queue.dequeue(size=5)
        assert len(batch) == 5
        assert trips == ["run_in_driver"]
        trips.clear()
        assert await queue.complete_many([Completion(t.id, t.lease_id) for t in batch]) == []
        assert trips == ["run_in_driver"]


class _Loop:
    """How many 10 ms turns the event loop has given a ticking task so far."""

    ticks = 0


async def _until(check: Callable[[], bool], what: str, within: float = 10.0) -> None:
    """Let the loop run until ``check()`` holds; fail after ``within`` seconds."""
    give_up = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() > give_up:
            raise AssertionError(f"not {what} after {within} s")
        await asyncio.sleep(0.005)


@asynccontextmanager
async def _lock_held_elsewhere(db_path: Path) -> AsyncIterator[tuple[sqlite3.Connection, _Loop]]:
    """Another connection (another process, as far as SQLite knows) holds the write lock
    until the caller commits it; meanwhile a task counts the loop's turns."""
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    loop = _Loop()

    async def tick() -> None:
        while True:
            await asyncio.sleep(0.01)
            loop.ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        yield holder, loop
    finally:
        ticker.cancel()
        holder.close()


async def test_a_held_write_lock_is_waited_for_in_the_driver_thread_not_on_the_loop(
    queue: WorkerQueue, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another connection (another process, as far as SQLite knows) holds the write lock:
    the claim waits for it without blocking the event loop, and goes through once it is
    released."""
    await queue.enqueue([make_task("waits")])
    await database_of(queue)._writer_driver()
    trips = _count_trips(monkeypatch)
    async with _lock_held_elsewhere(db_path) as (holder, loop):
        claim = asyncio.create_task(queue.dequeue(size=10))
        await _until(database_of(queue)._in_use.locked, "waiting in the driver's thread")
        before = loop.ticks
        await _until(lambda: loop.ticks >= before + 10, "the loop running meanwhile")
        assert not claim.done(), "the claim waits for the lock"
        holder.execute("COMMIT")
        (claimed,) = await asyncio.wait_for(claim, 10)
    assert claimed.state == TaskState.PROCESSING
    assert trips == ["run_waiting"]
    # The connection is back to not waiting: the next claim runs on the loop again.
    trips.clear()
    assert await queue.dequeue(size=10) == []
    assert trips == []


async def test_a_cancelled_wait_keeps_the_connection_until_its_transaction_ends(
    queue: WorkerQueue, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A claim waiting for the lock in the driver's thread is cancelled: its transaction
    still runs there once the lock is free. An enqueue meanwhile must not run inline on the
    same connection (it would block the loop on SQLite's mutex, or roll the other back): it
    queues behind it in the thread, and the loop keeps running."""
    await queue.enqueue([make_task("first")])
    async with _lock_held_elsewhere(db_path) as (holder, loop):
        claim = asyncio.create_task(queue.dequeue(size=10))
        await _until(database_of(queue)._in_use.locked, "waiting in the driver's thread")
        claim.cancel()
        enqueue = asyncio.create_task(queue.enqueue([make_task("second")]))
        before = loop.ticks
        await _until(lambda: loop.ticks >= before + 10, "the loop running while both wait")
        assert not enqueue.done()
        holder.execute("COMMIT")
        assert await asyncio.wait_for(enqueue, 10) == 1
    stats = await queue.get_queue_stats()
    assert (stats["processing"], stats["pending"]) == (1, 1), "the orphaned claim committed"
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


async def test_a_loop_of_inline_transactions_lets_other_tasks_run(queue: WorkerQueue) -> None:
    await queue.enqueue([make_task(str(n)) for n in range(200)])
    turns: list[int] = []
    done = 0

    async def drain() -> None:
        nonlocal done
        while batch := await queue.dequeue(size=10):
            await queue.complete_many([Completion(t.id, t.lease_id) for t in batch])
            done += len(batch)

    async def watch() -> None:
        while done < 200:
            turns.append(done)
            await asyncio.sleep(0)

    await asyncio.gather(drain(), watch())
    assert len(set(turns)) >= 10, "the watcher ran between the drain's transactions"


async def test_a_failing_body_writes_nothing(queue: WorkerQueue) -> None:
    kept = make_task("kept")
    await queue.enqueue([kept])
    # The second row collides with the first task's id inside the same transaction.
    with pytest.raises(DuplicateTaskError, match=kept.id):
        await queue.enqueue([make_task("new"), make_task("dup", id=kept.id)])
    assert (await queue.get_queue_stats())["total"] == 1


async def test_bodies_run_through_sqlalchemy_where_there_is_no_driver_thread(
    config: QueueConfig, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path other drivers (PostgreSQL) take: ``run_sync`` on an engine connection."""

    async def no_driver_thread(_self: Database) -> None:
        return None

    def never(*_args: Any) -> None:
        pytest.fail("the driver-thread path was taken")

    monkeypatch.setattr(Database, "_writer_driver", no_driver_thread)
    monkeypatch.setattr(db_module, "run_in_driver", never)
    async with WorkerQueue(config, clock=clock) as queue:
        parent = make_task("parent", idempotency_key="k")
        await queue.enqueue([parent])
        child = make_task("child", depends_on=[parent.id])
        await queue.enqueue([child, make_task("again", idempotency_key="k")])
        (claimed,) = await queue.dequeue(size=10)
        assert claimed.id == parent.id
        await queue.mark_as_complete(parent.id, lease_id=claimed.lease_id)
        (released,) = await queue.dequeue(size=10)
        assert released.id == child.id
        assert await queue.complete_many([Completion(child.id, "stale")]) == [child.id]
        assert (await queue.get_task(child.id)).state is TaskState.PROCESSING


async def test_acks_in_either_encoding_complete_the_same_way(queue: WorkerQueue) -> None:
    await queue.enqueue([make_task(str(n)) for n in range(4)])
    a, b, c, d = await queue.dequeue(size=4)
    # Plain acks (no results): one {id: lease} object; a stale lease is refused.
    refused = await queue.complete_many([Completion(a.id, a.lease_id), Completion(b.id, "stale")])
    assert refused == [b.id]
    # The same task twice, the stale lease last: arrays, so neither ack hides the other; the
    # current one is written and the stale one refused.
    refused = await queue.complete_many([Completion(b.id, b.lease_id), Completion(b.id, "stale")])
    assert refused == [b.id]
    assert (await queue.get_task(b.id)).state is TaskState.COMPLETED
    # Results travel with their ack.
    assert await queue.complete_many([Completion(c.id, c.lease_id, [{"ok": 1}])]) == []
    assert (await queue.get_task(c.id)).items[0].result == {"ok": 1}
    assert await queue.complete_many([Completion(d.id, None)]) == []
    states = {t.id: t.state for t in await queue.list_tasks()}
    assert set(states.values()) == {TaskState.COMPLETED}


async def test_results_json_cannot_hold_are_refused_before_writing(queue: WorkerQueue) -> None:
    await queue.enqueue([make_task("a"), make_task("b")])
    a, b = await queue.dequeue(size=2)
    with pytest.raises(InvalidInputError, match=rf"task {b.id}: results\[0\] is not JSON"):
        await queue.complete_many(
            [Completion(a.id, a.lease_id, ["ok"]), Completion(b.id, b.lease_id, [float("nan")])]
        )
    # Nothing of the batch was written.
    assert {t.state for t in await queue.list_tasks()} == {TaskState.PROCESSING}


async def test_a_transaction_left_open_is_rolled_back_not_built_on(
    queue: WorkerQueue, caplog: pytest.LogCaptureFixture
) -> None:
    await queue.enqueue([make_task("first")])
    writer = await database_of(queue)._writer_driver()
    assert writer is not None
    # What a failed rollback would leave: an open transaction holding a write.
    await writer.execute("BEGIN IMMEDIATE")
    await writer.execute("INSERT INTO paused_queues (queue, paused_at) VALUES ('stray', 1.0)")
    await queue.enqueue([make_task("second")])
    assert await queue.paused_queues() == {}
    assert (await queue.get_queue_stats())["pending"] == 2
    assert "left open" in caplog.text


async def test_the_hot_path_writes_with_the_configured_page_cache(config: QueueConfig) -> None:
    """A bulk enqueue's pages stay in memory rather than spilling into the WAL."""
    async with WorkerQueue(config.model_copy(update={"sqlite_writer_cache_mb": 48})) as queue:
        writer = await database_of(queue)._writer_driver()
        assert writer is not None
        async with writer.execute("PRAGMA cache_size") as cursor:
            assert await cursor.fetchone() == (-48 * 1024,)


async def test_work_given_as_meanwhile_runs_while_the_body_is_in_the_driver_thread(
    queue: WorkerQueue,
) -> None:
    """``meanwhile``'s slices run on the loop while a trip's body is still in the driver's
    thread (the body waits for the first), to their end; where the body runs inline, after
    the commit."""
    db = database_of(queue)
    await db._writer_driver()
    started, seen = threading.Event(), threading.Event()
    order: list[str] = []

    def body(_txn: Any) -> str:
        started.set()
        assert seen.wait(30), "meanwhile never ran while the body was in the thread"
        order.append("body")
        return "done"

    def meanwhile() -> bool:
        assert started.wait(30), "the body never started in the driver's thread"
        order.append("slice")
        seen.set()
        return order.count("slice") < 3

    rows = queue.config.sqlite_inline_rows + 1  # too many to run inline
    assert await db.transaction("test", body, rows=rows, meanwhile=meanwhile) == "done"
    assert order[0] == "slice"
    assert sorted(order) == ["body", "slice", "slice", "slice"], "three slices, then no more"

    order.clear()

    def inline_body(_txn: Any) -> int:
        order.append("inline")
        return 1

    def after() -> bool:
        order.append("after")
        return False

    assert await db.transaction("test", inline_body, meanwhile=after) == 1
    assert order == ["inline", "after"]


async def test_a_failed_transaction_does_not_run_meanwhile_after_it(queue: WorkerQueue) -> None:
    ran: list[str] = []

    def body(_txn: Any) -> None:
        raise RuntimeError("refused")

    def meanwhile() -> bool:
        ran.append("x")
        return False

    with pytest.raises(RuntimeError, match="refused"):
        await database_of(queue).transaction("test", body, meanwhile=meanwhile)
    assert ran == []

"""Hot-path transactions: one trip to aiosqlite's thread each, and the same bodies through
SQLAlchemy on drivers without that thread."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiosqlite
import pytest

from tests.support import FakeClock, make_task
from worker import (
    Completion,
    DuplicateTaskError,
    InvalidInputError,
    QueueConfig,
    TaskState,
    WorkerQueue,
)
from worker import db as db_module
from worker.db import Database


async def test_claim_enqueue_and_acknowledge_take_one_trip_each(
    queue: WorkerQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    trips: list[str] = []
    original: Callable[..., Any] = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Callable[..., Any], *args: Any) -> Any:
        trips.append(getattr(fn, "__name__", repr(fn)))
        return await original(self, fn, *args)

    await queue._db._writer_driver()  # made on first use, with a pragma of its own
    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    await queue.enqueue([make_task(str(n)) for n in range(5)])
    assert trips == ["run_in_driver"]
    trips.clear()
    batch = await queue.dequeue(size=5)
    assert len(batch) == 5
    assert trips == ["run_in_driver"]
    trips.clear()
    assert await queue.complete_many([Completion(t.id, t.lease_id) for t in batch]) == []
    assert trips == ["run_in_driver"]


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
    # The same task twice, the stale lease last: arrays, so neither ack hides the other.
    refused = await queue.complete_many([Completion(b.id, b.lease_id), Completion(b.id, "stale")])
    assert refused == []
    # Results travel with their ack.
    assert await queue.complete_many([Completion(c.id, c.lease_id, [{"ok": 1}])]) == []
    assert (await queue.get_task(c.id)).items[0].result == {"ok": 1}
    assert await queue.complete_many([Completion(d.id, None)]) == []
    states = {t.id: t.state for t in await queue.list_tasks()}
    assert set(states.values()) == {TaskState.COMPLETED}


async def test_results_json_cannot_hold_are_refused_before_writing(queue: WorkerQueue) -> None:
    await queue.enqueue([make_task("a"), make_task("b")])
    a, b = await queue.dequeue(size=2)
    with pytest.raises(InvalidInputError, match=f"task {b.id}: results are not JSON"):
        await queue.complete_many(
            [Completion(a.id, a.lease_id, ["ok"]), Completion(b.id, b.lease_id, [float("nan")])]
        )
    # Nothing of the batch was written.
    assert {t.state for t in await queue.list_tasks()} == {TaskState.PROCESSING}


async def test_a_transaction_left_open_is_rolled_back_not_built_on(
    queue: WorkerQueue, caplog: pytest.LogCaptureFixture
) -> None:
    await queue.enqueue([make_task("first")])
    writer = await queue._db._writer_driver()
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
        writer = await queue._db._writer_driver()
        assert writer is not None
        async with writer.execute("PRAGMA cache_size") as cursor:
            assert await cursor.fetchone() == (-48 * 1024,)

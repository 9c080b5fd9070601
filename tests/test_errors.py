"""Driver failures become StorageError naming the database; closed queues say so."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from tests.support import database_of, make_task, sqlite_url
from worker import (
    QueueClosedError,
    QueueConfig,
    QueueError,
    SchemaMismatchError,
    StorageError,
    WorkerQueue,
)


async def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"this is not a sqlite file, just some text" * 100)
    url = sqlite_url(path)
    with pytest.raises(StorageError) as raised:
        await WorkerQueue(QueueConfig(database_url=url)).initialize()
    assert url in str(raised.value)
    assert "not a database" in str(raised.value)


async def test_unwritable_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    url = sqlite_url(blocker / "sub" / "queue.db")
    with pytest.raises(StorageError, match="creating the database directory"):
        await WorkerQueue(QueueConfig(database_url=url)).initialize()


async def test_locked_database_becomes_storage_error_after_busy_timeout(db_path: Path) -> None:
    config = QueueConfig(database_url=sqlite_url(db_path), busy_timeout=0.2)
    async with WorkerQueue(config) as queue:
        holder = sqlite3.connect(db_path, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            with pytest.raises(StorageError, match="database is locked") as raised:
                await queue.enqueue([make_task()])
            assert isinstance(raised.value, QueueError)
            assert raised.value.database_url == config.database_url
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert await queue.enqueue([make_task()]) == 1


async def test_writer_waits_for_the_lock_instead_of_failing(db_path: Path) -> None:
    config = QueueConfig(database_url=sqlite_url(db_path), busy_timeout=5)
    async with WorkerQueue(config) as queue:
        holder = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")
        loop = asyncio.get_running_loop()
        loop.call_later(0.3, holder.execute, "COMMIT")
        try:
            assert await queue.enqueue([make_task()]) == 1
        finally:
            holder.close()


async def test_closed_queue(config: QueueConfig) -> None:
    queue = WorkerQueue(config)
    with pytest.raises(QueueClosedError, match="initialize"):
        await queue.dequeue()
    async with queue:
        pass
    with pytest.raises(QueueClosedError):
        await queue.enqueue([make_task()])


async def test_full_database_is_a_storage_error_and_writes_nothing(db_path: Path) -> None:
    config = QueueConfig(database_url=sqlite_url(db_path))
    async with WorkerQueue(config) as queue:
        await queue.enqueue([make_task()])
        with sqlite3.connect(db_path) as raw:
            (pages,) = raw.execute("PRAGMA page_count").fetchone()
        # A cap on the file's size, as a full disk would set one; it lasts per connection,
        # so it is set on the connection the queue writes with.
        writer = await database_of(queue)._writer_driver()
        assert writer is not None
        await writer.execute(f"PRAGMA max_page_count = {pages + 2}")
        with pytest.raises(StorageError, match="full"):
            await queue.enqueue([make_task("x" * 2000) for _ in range(500)])
        assert (await queue.get_queue_stats())["total"] == 1


async def test_memory_database_serialises_concurrent_writes() -> None:
    config = QueueConfig(database_url="sqlite+aiosqlite:///:memory:")
    async with WorkerQueue(config) as queue:
        await queue.enqueue([make_task(str(n)) for n in range(20)])
        results = await asyncio.gather(
            *(queue.dequeue(size=2) for _ in range(10)), queue.retry(), queue.retry()
        )
        claimed = [t.id for batch in results[:10] for t in batch]
        assert len(claimed) == len(set(claimed)) == 20


async def test_a_file_whose_tables_lack_declared_columns_is_refused_at_open(db_path: Path) -> None:
    config = QueueConfig(database_url=sqlite_url(db_path))
    async with WorkerQueue(config):
        pass
    with sqlite3.connect(db_path) as raw:  # as a file made by an unreleased schema would be
        raw.execute("ALTER TABLE tasks DROP COLUMN outcomes")
    with pytest.raises(SchemaMismatchError, match=r"tasks: outcomes") as caught:
        await WorkerQueue(config).initialize()
    assert caught.value.missing == {"tasks": ["outcomes"]}
    assert str(db_path) in str(caught.value)

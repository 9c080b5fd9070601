"""Opening a queue without creating or migrating its database: ``initialize(create=False)``
and ``initialize(read_only=True)``, on real SQLite files (the CLI's side: test_cli_open)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import exc as sa_exc

from tests.support import database_of, make_task, sqlite_url
from worker import (
    DatabaseNotFoundError,
    InvalidInputError,
    QueueConfig,
    SchemaOutdatedError,
    StorageError,
    WorkerQueue,
)
from worker.storage.database import Database
from worker.storage.migrate import alembic_config
from worker.storage.revision import HEAD_REVISION, REVISIONS


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def config_for(path: Path, **settings: Any) -> QueueConfig:
    return QueueConfig(database_url=sqlite_url(path), **settings)


async def make_database(path: Path, revision: str = "head") -> None:
    db = Database(config_for(path))
    await db.open()
    try:
        async with db.write("migrate") as conn:
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), revision))
    finally:
        await db.close()


def test_the_revisions_are_alembics() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    walked = [rev.revision for rev in script.walk_revisions()]
    assert tuple(reversed(walked)) == REVISIONS
    assert script.get_current_head() == HEAD_REVISION


@pytest.mark.parametrize("read_only", [False, True])
async def test_a_missing_file_is_an_error_and_nothing_is_created(
    tmp_path: Path, read_only: bool
) -> None:
    path = tmp_path / "typo" / "deeper" / "queue.db"
    queue = WorkerQueue(config_for(path))
    with pytest.raises(DatabaseNotFoundError) as caught:
        await queue.initialize(create=False, read_only=read_only)
    assert caught.value.path == str(path)
    assert str(path) in str(caught.value)
    assert listing(tmp_path) == []


async def test_an_existing_database_is_used_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    await make_database(path)
    queue = WorkerQueue(config_for(path))
    await queue.initialize(create=False)
    try:
        await queue.enqueue([make_task()])
        assert (await queue.get_queue_stats())["pending"] == 1
    finally:
        await queue.close()


async def test_an_older_revision_is_not_migrated(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    await make_database(path, "0003")
    for read_only in (False, True):
        queue = WorkerQueue(config_for(path))
        with pytest.raises(SchemaOutdatedError) as caught:
            await queue.initialize(create=False, read_only=read_only)
        assert (caught.value.revision, caught.value.expected) == ("0003", HEAD_REVISION)
        assert not caught.value.newer
        assert "wq db upgrade" in str(caught.value)
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT version_num FROM alembic_version").fetchone() == ("0003",)
    async with WorkerQueue(config_for(path)) as queue:  # the default migrates
        assert (await queue.get_queue_stats())["total"] == 0


async def test_a_revision_from_a_newer_version_is_named_so(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    await make_database(path)
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(SchemaOutdatedError, match="newer than this version") as caught:
        await WorkerQueue(config_for(path)).initialize(read_only=True)
    assert caught.value.newer
    # So does the migrating open (wq db upgrade, wq submit): it was Alembic's CommandError,
    # "Can't locate revision", an internal error (exit 70) to wq.
    with pytest.raises(SchemaOutdatedError, match="newer than this version") as caught:
        await WorkerQueue(config_for(path)).initialize()
    assert caught.value.revision == "9999"
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT version_num FROM alembic_version").fetchone() == ("9999",)


async def test_an_empty_file_has_no_revision(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    sqlite3.connect(path).close()
    with pytest.raises(SchemaOutdatedError, match=r"revision \(none\)"):
        await WorkerQueue(config_for(path)).initialize(create=False)


async def test_read_only_reads_and_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    async with WorkerQueue(config_for(path)) as writer:
        task = make_task()
        await writer.enqueue([task])
    before = path.read_bytes()
    queue = WorkerQueue(config_for(path))
    await queue.initialize(read_only=True)
    try:
        assert (await queue.get_task(task.id)).id == task.id
        assert [t.id for t in await queue.list_tasks()] == [task.id]
        assert (await queue.get_statistics())["states"]["pending"] == 1
        with pytest.raises(StorageError, match="opened read-only"):
            await queue.enqueue([make_task()])
        with pytest.raises(StorageError, match="opened read-only"):
            await queue.pause_queue("default")
        with pytest.raises(StorageError, match="opened read-only"):
            await queue.dequeue()
    finally:
        await queue.close()
    assert path.read_bytes() == before
    with pytest.raises(InvalidInputError, match="read-only"):
        await WorkerQueue(config_for(path)).initialize(create=True, read_only=True)


async def test_read_only_never_waits_for_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    await make_database(path)
    holder = sqlite3.connect(path)
    holder.execute("BEGIN IMMEDIATE")  # another process is writing, for longer than we wait
    try:
        config = config_for(path, busy_timeout=0.2)
        with pytest.raises(StorageError, match="locked"):  # opening to migrate waits, fails
            await WorkerQueue(config).initialize()
        queue = WorkerQueue(config)
        started = time.monotonic()
        await queue.initialize(read_only=True)
        try:
            assert (await queue.get_queue_stats())["total"] == 0
        finally:
            await queue.close()
        assert time.monotonic() - started < 60  # answered, not "database is locked"
    finally:
        holder.close()


async def test_read_only_reads_a_read_only_file_in_a_read_only_directory(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "ro"
    path = folder / "queue.db"
    async with WorkerQueue(config_for(path)) as writer:
        await writer.enqueue([make_task()])
    path.chmod(0o444)
    folder.chmod(0o555)
    try:
        before = (listing(folder), path.read_bytes())
        queue = WorkerQueue(config_for(path))
        await queue.initialize(read_only=True)
        try:
            assert (await queue.get_queue_stats())["pending"] == 1
        finally:
            await queue.close()
        assert (listing(folder), path.read_bytes()) == before
    finally:
        folder.chmod(0o755)
        path.chmod(0o644)


@pytest.mark.parametrize("writable", [True, False])
async def test_sqlite_itself_refuses_a_read_only_queues_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writable: bool
) -> None:
    # False: as a process that may not write the file sees it (this one may be root), so
    # the file opens with mode=ro; True: it opens as usual, with query_only.
    monkeypatch.setattr("worker.storage.database.writable", lambda path: writable)
    path = tmp_path / "queue.db"
    await make_database(path)
    queue = WorkerQueue(config_for(path))
    await queue.initialize(read_only=True)
    try:
        assert (await queue.get_queue_stats())["total"] == 0
        async with database_of(queue).engine.connect() as conn:  # past the queue's own refusal
            with pytest.raises(sa_exc.OperationalError, match=r"readonly|query_only"):
                await conn.execute(sa.text("DELETE FROM tasks"))
    finally:
        await queue.close()
    if writable:  # the last connection to close removed the -wal and -shm files
        assert listing(tmp_path) == ["queue.db"]

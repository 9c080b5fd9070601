"""Which ``wq`` commands may create or migrate a database: only ``db upgrade``, ``worker`` and
``submit``. Read commands open an existing file read-only; operator commands need one at the
newest revision. Real subprocesses on real files (the API's side: test_opening)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from alembic import command

from tests.support import make_task, sqlite_url
from tests.test_cli import UNKNOWN_ID, one_error_line, with_queue, wq, wq_all
from worker import QueueConfig
from worker.storage.database import Database
from worker.storage.migrate import alembic_config, head_revision

READS = (("status", UNKNOWN_ID), ("list",), ("why", UNKNOWN_ID), ("stats",))
# One of each kind of write (they share the opening); each start costs a second under load.
WRITES = (("cancel", UNKNOWN_ID), ("pause", "q"), ("purge", "--older-than", "1d"))


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_no_read_or_write_command_creates_a_database(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "queue.db"
    for result in wq_all(missing, *READS, *WRITES):
        assert result.code == 3, result
        line = one_error_line(result)
        assert f"no database at {missing}" in line
        assert "wq db upgrade" in line
        assert result.out == ""
    assert listing(tmp_path) == []


def test_a_file_uri_is_a_file_like_a_path(tmp_path: Path) -> None:
    """``sqlite:///file:PATH?uri=true`` names PATH: a read command finds no database there
    (it created an empty file and asked for ``wq db upgrade`` before), ``submit`` creates
    it, and a command given the plain path reads what was submitted."""
    db = tmp_path / "queue.db"
    uri = f"sqlite:///file:{db}?uri=true"
    listed = wq(uri, "list")
    assert listed.code == 3
    assert f"no database at {db}" in one_error_line(listed)
    assert listing(tmp_path) == []
    submitted = wq(uri, "submit", "call", "os:getcwd")
    assert submitted.code == 0, submitted.err
    plain = wq(db, "list")
    assert submitted.out.strip() in plain.out


def test_read_commands_never_take_the_write_lock(db_path: Path) -> None:
    task = make_task()
    with_queue(db_path, lambda queue: queue.enqueue([task]))
    holder = sqlite3.connect(db_path)
    holder.execute("BEGIN IMMEDIATE")  # a writer holds the lock longer than wq would wait
    try:
        env = {"QUEUE_BUSY_TIMEOUT": "0.2"}
        reads = (("status", task.id), ("list",), ("why", task.id), ("stats", "--json"))
        results = wq_all(db_path, *reads, env=env)
        locked = wq(db_path, "pause", "q", env=env)
    finally:
        holder.close()
    for result in results:
        assert result.code == 0, result
    assert task.id in results[1].out
    assert results[3].json()["states"]["pending"] == 1
    assert locked.code == 3
    assert "database is locked" in one_error_line(locked)


def test_read_commands_work_on_a_read_only_file_and_directory(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    path = folder / "queue.db"
    task = make_task()
    with_queue(path, lambda queue: queue.enqueue([task]))
    path.chmod(0o444)
    folder.chmod(0o555)
    try:
        before = (listing(folder), path.read_bytes())
        status, table, why, stats = wq_all(
            path, ("status", task.id, "--json"), ("list",), ("why", task.id), ("stats",)
        )
        after = (listing(folder), path.read_bytes())
    finally:
        folder.chmod(0o755)
        path.chmod(0o644)
    for result in (status, table, why, stats):
        assert result.code == 0, result
    assert status.json()["id"] == task.id
    assert task.id in table.out
    assert after == before


def make_old_database(path: Path, revision: str) -> None:
    async def main() -> None:
        db = Database(QueueConfig(database_url=sqlite_url(path)))
        await db.open()
        try:
            async with db.write("migrate") as conn:
                await conn.run_sync(lambda c: command.upgrade(alembic_config(c), revision))
        finally:
            await db.close()

    asyncio.run(main())


def test_an_older_schema_asks_for_db_upgrade(db_path: Path) -> None:
    make_old_database(db_path, "0003")
    for result in wq_all(db_path, ("list",), ("pause", "q")):  # a read and a write
        assert result.code == 3, result
        line = one_error_line(result)
        assert f"is at schema revision 0003, this wq needs {head_revision()}" in line
        assert line.endswith("run `wq db upgrade`")
    with sqlite3.connect(db_path) as raw:  # not migrated behind the user's back
        assert raw.execute("SELECT version_num FROM alembic_version").fetchone() == ("0003",)
    assert wq(db_path, "db", "upgrade").out.strip() == head_revision()
    assert wq(db_path, "pause", "q").out.strip() == "queue q paused"


def test_a_directory_given_as_the_database_is_named_as_one(tmp_path: Path) -> None:
    # It was "no database at DIR (`wq db upgrade` creates one ...)", and db upgrade then
    # failed with SQLite's "unable to open database file".
    for result in wq_all(tmp_path, ("list",), ("db", "upgrade")):
        assert result.code == 3, result
        line = one_error_line(result)
        assert f"{tmp_path} is a directory: give the database file's path" in line
        assert "wq db upgrade" not in line
    assert listing(tmp_path) == []


def test_a_database_in_memory_is_refused_by_every_command(tmp_path: Path) -> None:
    """Each wq command is a process of its own: a database in memory would be gone when it
    ends, and a submit "succeed" into nothing."""
    commands = (
        ("submit", "call", "os:getcwd"),
        ("db", "upgrade"),
        ("list",),
        ("worker", "--burst"),
    )
    memory = ("sqlite:///file:q.db?mode=memory&uri=true", "sqlite:///file::memory:?uri=true")
    for db in (":memory:", "sqlite+aiosqlite://", "sqlite:///:memory:", *memory):
        for result in wq_all(db, *commands):
            assert result.code == 2, result
            line = one_error_line(result)
            assert "is a database in memory, gone when this wq command ends" in line
            assert "give a file path" in line
    memory_url = wq(None, "list", env={"QUEUE_DATABASE_URL": "sqlite:///:memory:"})
    assert memory_url.code == 2
    assert one_error_line(memory_url).startswith("wq: error: QUEUE_DATABASE_URL: ")

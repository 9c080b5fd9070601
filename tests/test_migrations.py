"""Upgrading a database that holds tasks keeps them, and the claim index keeps its predicate."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic import command

from tests.support import make_task, sqlite_url
from worker import QueueConfig, TaskState, WorkerQueue
from worker.storage.database import Database
from worker.storage.migrate import alembic_config, head_revision


async def test_upgrade_from_0001_keeps_tasks(db_path: Path) -> None:
    config = QueueConfig(database_url=sqlite_url(db_path))
    db = Database(config)
    await db.open()
    try:
        async with db.write("migrate") as conn:
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0001"))
    finally:
        await db.close()
    with sqlite3.connect(db_path) as raw:  # a task written by the 0001 schema
        raw.execute(
            "INSERT INTO tasks (id, queue, state, priority, schedule_at, attempt_count,"
            " expired_count, errors, items, metadata, created_at, updated_at) VALUES"
            " ('01M82RQ68MFZ9T6GX810R5WW15', 'default', 'pending', 0, 0, 0, 0, '[]',"
            ' \'[{"kind":"tts","request":{"text":"hi","voice_id":"a.b"},"response_url":null}]\','
            " '{}', 0, 0)"
        )
    async with WorkerQueue(config) as queue:
        (task,) = await queue.dequeue()
        assert task.id == "01M82RQ68MFZ9T6GX810R5WW15"
        assert task.held is False
        assert task.waiting_on == 0
        await queue.enqueue([make_task()])
        assert (await queue.get_queue_stats())[TaskState.PENDING.value] == 1
    with sqlite3.connect(db_path) as raw:
        (version,) = raw.execute("SELECT version_num FROM alembic_version").fetchone()
        (sql,) = raw.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'ix_tasks_claim'"
        ).fetchone()
    assert version == head_revision() == "0006"
    assert "WHERE state = 'pending'" in sql
    assert "held" in sql

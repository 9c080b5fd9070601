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
    assert version == head_revision() == "0007"
    assert "WHERE state = 'pending'" in sql
    assert "held" in sql


async def test_revision_0007_orders_the_kept_states_and_goes_down_again(
    database_url: str,
) -> None:
    """Up to 0007 the discarded and cancelled tasks have their indexes in id order (pages of
    every queue and of one, in id order, right across both); down to 0006 they go back."""
    from tests.support import raw_sql
    from tests.test_webhooks_migrations import migrate

    config = QueueConfig(database_url=database_url)
    async with WorkerQueue(config) as queue:
        tasks = [make_task(queue=q) for q in ("a", "b") * 6]
        await queue.enqueue(tasks)  # fills in each task's id
        for task in tasks[:6]:
            await queue.mark_as_cancelled(task.id)
        claimed = await queue.dequeue(6)
        assert sorted(t.id for t in claimed) == [t.id for t in tasks[6:]]
        for task in claimed:
            await queue.mark_as_discarded(task.id, "no", lease_id=task.lease_id)
    sqlite = database_url.startswith("sqlite")
    names = (
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tasks'"
        if sqlite
        else "SELECT indexname FROM pg_indexes WHERE tablename = 'tasks'"
    )
    added = {"ix_tasks_discarded_id", "ix_tasks_cancelled_id"}
    assert added <= {name for (name,) in await raw_sql(database_url, names)}

    await migrate(config, "0006", down=True)
    left = {name for (name,) in await raw_sql(database_url, names)}
    assert not added & left
    assert {"ix_tasks_discarded", "ix_tasks_cancelled"} <= left
    await migrate(config, "head")

    async with WorkerQueue(config) as queue:
        for state, ids in ((TaskState.CANCELLED, tasks[:6]), (TaskState.DISCARDED, tasks[6:])):
            every = [t.id for t in ids]
            first = await queue.list_tasks(state, limit=4)
            rest = await queue.list_tasks(state, limit=4, after_id=first[-1].id)
            assert [t.id for t in first + rest] == every
            of_b = await queue.list_tasks(state, queue="b", limit=2)
            more = await queue.list_tasks(state, queue="b", limit=2, after_id=of_b[-1].id)
            assert [t.id for t in of_b + more] == [t.id for t in ids if t.queue == "b"]

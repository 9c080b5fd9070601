"""The migrated schema matches the declared tables; initialize() is safe to race."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection

from tests.support import sqlite_url
from worker import QueueConfig, TaskState, WorkerQueue
from worker.core.selection import TaskFilter
from worker.storage import selection
from worker.storage.database import Database
from worker.storage.migrate import head_revision
from worker.storage.rows import RAW_COLUMNS
from worker.storage.schema import metadata
from worker.storage.statements import Statements


async def test_migrated_schema_matches_declared_tables(db_path: Path) -> None:
    config = QueueConfig(database_url=sqlite_url(db_path))
    async with WorkerQueue(config):
        pass
    db = Database(config)
    await db.open()

    def diff(conn: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))

    try:
        async with db.read("compare") as conn:
            differences = await conn.run_sync(diff)
    finally:
        await db.close()
    assert differences == []

    with sqlite3.connect(db_path) as raw:
        (version,) = raw.execute("SELECT version_num FROM alembic_version").fetchone()
        indexes = {
            row[0]: row[1]
            for row in raw.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            )
        }
        (mode,) = raw.execute("PRAGMA journal_mode").fetchone()
    assert version == head_revision()
    assert "WHERE state = 'pending'" in indexes["ix_tasks_claim"]
    assert mode == "wal"


@pytest.mark.parametrize("by_queue", [False, True])
async def test_claim_uses_the_partial_index(db_path: Path, by_queue: bool) -> None:
    async with WorkerQueue(QueueConfig(database_url=sqlite_url(db_path))):
        pass
    statements = Statements(sqlite.dialect())
    claim = statements.claim_by_queue if by_queue else statements.claim
    params = claim.params(
        now=1.0, size=10, lease_prefix="l:", default_vt=30.0, worker_id="w", queues='["a"]'
    )
    with sqlite3.connect(db_path) as raw:
        plan = " ".join(row[3] for row in raw.execute(f"EXPLAIN QUERY PLAN {claim.sql}", params))
    assert "USING INDEX ix_tasks_claim" in plan
    assert "TEMP B-TREE" not in plan, "the index order serves the ORDER BY"
    assert "SCAN tasks " not in plan.replace("SCAN tasks USING INDEX ix_tasks_claim", "")


@pytest.mark.parametrize("queue", [None, "a"])
@pytest.mark.parametrize("after", [None, ("01J0000000000000000000000A", 3)])
async def test_a_page_of_pending_tasks_walks_the_claim_index_from_its_place(
    db_path: Path, queue: str | None, after: tuple[str, int] | None
) -> None:
    # A queue filter once led the planner to the index of pending tasks by queue, whose
    # entries it then sorted, all of them, for every page.
    async with WorkerQueue(QueueConfig(database_url=sqlite_url(db_path))):
        pass
    page = selection.list_page(
        TaskFilter(state=TaskState.PENDING, queue=queue),
        after_id=None if after is None else after[0],
        after_priority=None if after is None else after[1],
        limit=50,
        columns=RAW_COLUMNS,
    )
    sql = page.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True})
    with sqlite3.connect(db_path) as raw:
        plan = [
            (node, parent, detail)
            for node, parent, _, detail in raw.execute(f"EXPLAIN QUERY PLAN {sql}")
        ]
    [ids] = [node for node, _, detail in plan if detail.startswith("LIST SUBQUERY")]
    inner = [detail for _, parent, detail in plan if parent == ids]
    walk = (
        "SEARCH tasks USING INDEX ix_tasks_claim (priority<?)"
        if after
        else ("SCAN tasks USING INDEX ix_tasks_claim")
    )
    assert inner == [walk], "the index order serves the page: no sort of the pending tasks"


@pytest.mark.parametrize("state", [TaskState.DISCARDED, TaskState.CANCELLED])
@pytest.mark.parametrize("queue", [None, "a"])
@pytest.mark.parametrize("after", [None, "01J0000000000000000000000A"])
async def test_a_page_of_kept_tasks_walks_their_index_in_id_order(
    db_path: Path, state: TaskState, queue: str | None, after: str | None
) -> None:
    # These pages once read every task of the state (of the queue) and sorted them: a
    # second a page at a million discarded tasks. With a queue, the walk is of that queue's
    # range alone (a walk of every queue's would read them all to find a rare queue's).
    async with WorkerQueue(QueueConfig(database_url=sqlite_url(db_path))):
        pass
    page = selection.list_page(
        TaskFilter(state=state, queue=queue), after_id=after, limit=50, columns=RAW_COLUMNS
    )
    sql = page.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True})
    with sqlite3.connect(db_path) as raw:
        plan = [
            (node, parent, detail)
            for node, parent, _, detail in raw.execute(f"EXPLAIN QUERY PLAN {sql}")
        ]
    [ids] = [node for node, _, detail in plan if detail.startswith("LIST SUBQUERY")]
    inner = [detail for _, parent, detail in plan if parent == ids]
    if queue is None:
        index, bound = f"ix_tasks_{state.value}_id", "id>?"
    else:
        index, bound = f"ix_tasks_{state.value}", "queue=? AND id>?"
    if after is not None:
        walk = f"SEARCH tasks USING INDEX {index} ({bound})"
    elif queue is not None:
        walk = f"SEARCH tasks USING INDEX {index} (queue=?)"
    else:
        walk = f"SCAN tasks USING INDEX {index}"
    assert inner == [walk], "the index order serves the page: no sort of the state's tasks"


async def test_acknowledgements_look_rows_up_by_id(db_path: Path) -> None:
    async with WorkerQueue(QueueConfig(database_url=sqlite_url(db_path))):
        pass
    statements = Statements(sqlite.dialect())
    with sqlite3.connect(db_path) as raw:
        for ack in (statements.complete, statements.retry, statements.discard):
            params = ack.params(acks='[["a", "b", null, null, null]]', now=1.0)
            plan = " ".join(row[3] for row in raw.execute(f"EXPLAIN QUERY PLAN {ack.sql}", params))
            assert "SEARCH tasks USING INDEX sqlite_autoindex_tasks_1 (id=?)" in plan, plan


async def test_concurrent_initialize_on_a_fresh_file(db_path: Path) -> None:
    config = QueueConfig(database_url=sqlite_url(db_path))
    queues = [WorkerQueue(config) for _ in range(6)]
    try:
        await asyncio.gather(*(q.initialize() for q in queues))
    finally:
        await asyncio.gather(*(q.close() for q in queues))
    async with WorkerQueue(config) as again:  # and again, already at head
        assert (await again.get_queue_stats())["total"] == 0


async def test_default_database_directory_is_created(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "queue.db"
    async with WorkerQueue(QueueConfig(database_url=sqlite_url(path))):
        pass
    assert path.exists()

"""Migration 0004 (a delivery per ending of a task) on a database that holds deliveries."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic import command

from tests.support import FakeClock, sqlite_url
from worker import QueueConfig, WorkerQueue
from worker.storage.database import Database
from worker.storage.migrate import alembic_config
from worker.webhooks import HttpxTransport
from worker.webhooks.dispatcher import WebhookDispatcher

ITEMS = (
    '[{"kind":"job","request":{"log":null,"seconds":[0.0],"name":""},'
    '"response_url":"http://127.0.0.1:9/hook"}]'
)

#: task id -> (state, finished_at, or None: no such task any more); and its delivery row
#: under 0003: (state, created_at), and the finished_at 0004 gives the row.
CASES = {
    # Made for the task's current ending: takes its finish time.
    "01M82RQ68MFZ9T6GX810R5WW1A": (("completed", 1000.0), ("delivered", 1001.0), 1000.0),
    # The task was resumed since and runs: the row reported an ending gone by.
    "01M82RQ68MFZ9T6GX810R5WW1B": (("pending", None), ("delivered", 900.0), 900.0),
    # The task was resumed since and ended again (that ending was never delivered).
    "01M82RQ68MFZ9T6GX810R5WW1C": (("completed", 2000.0), ("delivered", 1500.0), 1500.0),
    # A pending row reports the task's current ending, as it would have before.
    "01M82RQ68MFZ9T6GX810R5WW1D": (("discarded", 2000.0), ("pending", 1500.0), 2000.0),
    # The task was purged (before purge deleted deliveries).
    "01M82RQ68MFZ9T6GX810R5WW1E": (None, ("delivered", 800.0), 800.0),
}


async def migrate(config: QueueConfig, revision: str, *, down: bool = False) -> None:
    db = Database(config)
    await db.open()
    try:
        move = command.downgrade if down else command.upgrade
        async with db.write("migrate") as conn:
            await conn.run_sync(lambda c: move(alembic_config(c), revision))
    finally:
        await db.close()


def deliveries(db_path: Path) -> dict[str, list[tuple[float, int, str, float]]]:
    """task id -> its rows as (finished_at, ending, state, created_at), by ending."""
    found: dict[str, list[tuple[float, int, str, float]]] = {}
    with sqlite3.connect(db_path) as raw:
        for task_id, *row in raw.execute(
            "SELECT task_id, finished_at, ending, state, created_at FROM webhook_deliveries"
            " ORDER BY task_id, ending"
        ):
            found.setdefault(task_id, []).append((row[0], row[1], row[2], row[3]))
    return found


async def test_upgrade_from_0003_keeps_each_row_on_the_ending_it_reported(
    db_path: Path, clock: FakeClock
) -> None:
    config = QueueConfig(database_url=sqlite_url(db_path), webhook_allow_private=True)
    await migrate(config, "0003")
    with sqlite3.connect(db_path) as raw:
        for task_id, (task, (state, created_at), _) in CASES.items():
            if task is not None:
                raw.execute(
                    "INSERT INTO tasks (id, queue, state, priority, schedule_at, attempt_count,"
                    " expired_count, errors, items, metadata, created_at, updated_at,"
                    " finished_at) VALUES (?, 'default', ?, 0, 0, 1, 0, '[]', ?, '{}', 0, 0, ?)",
                    (task_id, task[0], ITEMS, task[1]),
                )
            raw.execute(
                "INSERT INTO webhook_deliveries (task_id, item_index, url, state, attempts,"
                " next_attempt_at, created_at, updated_at) VALUES (?, 0, 'http://x/', ?, 1,"
                " ?, ?, ?)",
                (task_id, state, created_at, created_at, created_at),
            )
        # The scan mark of 0003 is 0 here: the first scan reads every task above again.

    async with WorkerQueue(config, clock=clock) as queue:  # upgrades to head
        assert deliveries(db_path) == {
            task_id: [(finished_at, 1, state, created_at)]
            for task_id, (_, (state, created_at), finished_at) in CASES.items()
        }
        dispatcher = WebhookDispatcher(queue, HttpxTransport(), clock=clock)
        assert await dispatcher.collect() == 1, "only the ending that was never delivered"
        again = deliveries(db_path)["01M82RQ68MFZ9T6GX810R5WW1C"]
        assert again == [(1500.0, 1, "delivered", 1500.0), (2000.0, 2, "pending", clock.now)]

    await migrate(config, "0003", down=True)  # one row per item again: the latest ending's
    with sqlite3.connect(db_path) as raw:
        rows = raw.execute(
            "SELECT created_at, state FROM webhook_deliveries"
            " WHERE task_id = '01M82RQ68MFZ9T6GX810R5WW1C'"
        ).fetchall()
        total = raw.execute("SELECT count(*) FROM webhook_deliveries").fetchone()
        columns = {row[1] for row in raw.execute("PRAGMA table_info(webhook_deliveries)")}
    assert rows == [(clock.now, "pending")]
    assert total == (len(CASES),)
    assert not {"finished_at", "ending"} & columns

    await migrate(config, "head")  # and up again: the pending row reports the current ending
    assert deliveries(db_path)["01M82RQ68MFZ9T6GX810R5WW1C"] == [(2000.0, 1, "pending", clock.now)]

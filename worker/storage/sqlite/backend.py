"""The SQLite backend's own statements: the claim through ``INDEXED BY``, counts per index."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from worker.core.states import TaskState
from worker.storage.backend import Backend, Capabilities, Insert
from worker.storage.read_results import STATE_INDEXES
from worker.storage.schema import tasks

_PENDING = TaskState.PENDING.value


class SqliteBackend(Backend):
    name = "sqlite"
    capabilities = Capabilities(pushes_wakeups=False, single_writer=True, many_machines=False)

    def insert(self, table: sa.Table) -> Insert:
        return sqlite.insert(table)

    def due(self, *, by_queue: bool, limit: bool) -> sa.TextualSelect:
        # Pinned to the partial claim index with INDEXED BY (which SQLAlchemy cannot
        # express, hence the text): the planner cannot drift to another index and sort
        # every pending row, and a schema without the index fails loudly.
        queue_filter = "AND queue IN (SELECT value FROM json_each(:queues)) " if by_queue else ""
        tail = "ORDER BY priority DESC, id LIMIT :size" if limit else "LIMIT 1"
        return sa.text(
            "SELECT id FROM tasks INDEXED BY ix_tasks_claim "
            f"WHERE state = '{_PENDING}' AND schedule_at <= :now "
            "AND held = 0 AND waiting_on = 0 "
            "AND memory_bytes <= :memory AND cpu_share <= :cpu AND needs_gpu <= :gpu "
            "AND queue NOT IN (SELECT queue FROM paused_queues) "
            f"{queue_filter}{tail}"
        ).columns(tasks.c.id)

    def claim(self, *, by_queue: bool, values: dict[str, Any], returning: list[Any]) -> Any:
        # ``UPDATE ... WHERE id IN (SELECT ... LIMIT n) RETURNING``: the statement is atomic
        # (SQLite has one writer), so the outer UPDATE needs no state check of its own (one
        # would lead SQLite to walk every pending row instead of looking the ids up).
        due = self.due(by_queue=by_queue, limit=True)
        return sa.update(tasks).where(tasks.c.id.in_(due)).values(**values).returning(*returning)

    def state_counts(self, *, by_queue: bool) -> sa.TextClause:
        # The total walks the smallest index (about 13 ms per million rows here); every
        # other state goes through its partial index, named with INDEXED BY so the planner
        # cannot wander onto the queue index and read every row.
        filters = " AND queue = :queue" if by_queue else ""
        counts = ", ".join(
            f"(SELECT count(*) FROM tasks INDEXED BY {index} WHERE state = '{state.value}'"
            f"{filters})"
            for state, index in STATE_INDEXES.items()
        )
        total = "(SELECT count(*) FROM tasks" + (" WHERE queue = :queue" if by_queue else "")
        return sa.text(f"SELECT {total}), {counts}")

    def queue_counts(self, state: TaskState) -> sa.TextClause:
        # Left to itself the planner walks ix_tasks_queue (every row) to skip a sort.
        return sa.text(
            f"SELECT queue, count(*) FROM tasks INDEXED BY {STATE_INDEXES[state]} "
            f"WHERE state = '{state.value}' GROUP BY queue"
        )

    def queue_counts_above(self) -> sa.TextClause:
        # Grouping by a plain ``queue`` lets the planner walk ix_tasks_queue (every row) to
        # skip a sort; ``+queue`` is an expression no index holds, so the key range is read.
        return sa.text(
            "SELECT queue, count(*), sum(CASE WHEN id <= :mark THEN 1 ELSE 0 END) FROM tasks "
            "WHERE id > :since GROUP BY +queue"
        )

    def position(self) -> sa.TextClause:
        return sa.text(
            f"SELECT count(*) FROM tasks INDEXED BY ix_tasks_claim WHERE state = '{_PENDING}' "
            "AND schedule_at <= :now AND held = 0 AND waiting_on = 0 AND queue = :queue "
            "AND (priority > :priority OR (priority = :priority AND id < :id))"
        )

    def pending_by_queue(self) -> sa.TextClause:
        # Through the partial claim index, which holds pending tasks only (the planner would
        # rather take the queue index and read every row of the queue, finished ones too).
        return sa.text(
            "SELECT queue, count(*) FROM tasks INDEXED BY ix_tasks_claim "
            f"WHERE state = '{_PENDING}' AND queue IN (SELECT value FROM json_each(:queues)) "
            "GROUP BY queue"
        )

    def oldest_pending(self) -> sa.TextClause:
        return sa.text(
            "SELECT min(created_at) FROM tasks INDEXED BY ix_tasks_claim "
            f"WHERE state = '{_PENDING}'"
        )

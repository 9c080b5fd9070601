"""Reads for people and dashboards: a task, a page of tasks, counts per state.

A row that cannot be read whole never fails a read: it is shown as far as it can be
(:mod:`worker.storage.salvage`, :mod:`worker.storage.undecodable`), and logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.core.errors import StorageError, TaskNotFoundError
from worker.core.models import Task
from worker.core.selection import TaskFilter
from worker.core.states import TaskState
from worker.storage import read_results, selection, undecodable
from worker.storage.database import Database
from worker.storage.payload import PayloadError
from worker.storage.queue_totals import QueueTotals
from worker.storage.read_results import STATE_INDEXES
from worker.storage.rows import RAW_COLUMNS
from worker.storage.salvage import readable
from worker.storage.schema import tasks


@dataclass(frozen=True, slots=True)
class QueueFigures:
    """What a dashboard or a metrics scrape shows per queue: tasks per state (lower-case
    state names; a state with no task is absent) and the oldest pending task's
    ``created_at``."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    oldest_pending_at: dict[str, float] = field(default_factory=dict)


class ReadStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._totals = QueueTotals()

    async def get(self, task_id: str) -> Task:
        """The task (a row that cannot be read whole is shown as far as it can be, see
        :mod:`worker.storage.salvage`)."""
        async with self._db.read("get_task") as conn:
            rows, tolerant = await undecodable.rows(conn, task_row(task_id))
        if not rows:
            raise TaskNotFoundError(task_id)
        task = readable(rows[0], tolerant=tolerant)
        if task is None:
            cause = PayloadError(f"task {task_id}'s row cannot be read (see the log)")
            raise StorageError(self._db.url, "get_task", cause)
        return task

    async def list(
        self,
        chosen: TaskFilter,
        *,
        limit: int,
        after_id: str | None,
        after_priority: int | None = None,
    ) -> list[Task]:
        """A page of the tasks ``chosen`` matches after ``after_id``: in id order, pending
        tasks in claim order after ``(after_priority, after_id)``, where a missing
        ``after_priority`` is the task's own now (which index each filter uses:
        :mod:`worker.storage.selection`)."""
        async with self._db.read("list_tasks") as conn:
            pending = chosen.state is TaskState.PENDING
            if pending and after_id is not None and after_priority is None:
                after_priority = await _priority(conn, after_id)
            query = selection.list_page(
                chosen,
                after_id=after_id,
                after_priority=after_priority,
                limit=limit,
                columns=RAW_COLUMNS,
            )
            rows, tolerant = await undecodable.rows(conn, query)
        # A row that cannot be shown at all is logged and left out, not the page.
        return [task for row in rows if (task := readable(row, tolerant=tolerant)) is not None]

    async def count(self, chosen: TaskFilter) -> int:
        """How many tasks ``chosen`` matches."""
        async with self._db.read("count_tasks") as conn:
            return int((await conn.execute(selection.count(chosen))).scalar_one())

    async def count_by_state(self, queue: str | None) -> dict[str, int]:
        """Tasks per state, counting completed ones (usually almost every row) by subtraction.

        The total is ``count(*)`` (purge old tasks to keep it small); every other state is
        counted through its partial index (the backend's statement makes sure of it);
        completed is the difference.
        """
        query = self._db.backend.state_counts(by_queue=queue is not None)
        if queue is not None:
            query = query.bindparams(queue=queue)
        async with self._db.read("get_queue_stats") as conn:
            return read_results.state_counts((await conn.execute(query)).one())

    async def queue_figures(self) -> QueueFigures:
        """Tasks per queue and state, and each queue's oldest pending task.

        Each state other than completed is counted on its own through its partial index (the
        backend's statement makes sure of it); completed tasks are each queue's total (its
        index on ``queue``, kept between reads by :class:`QueueTotals`) less the rest.
        """
        per_state = [self._db.backend.queue_counts(state) for state in STATE_INDEXES]
        # One lookup per queue: the first entry of its range in ix_tasks_pending_created
        # (a GROUP BY over the index would still visit every pending task's entry).
        oldest = (
            sa.select(sa.func.min(tasks.c.created_at))
            .where(sa.text(f"state = '{TaskState.PENDING.value}'"))
            .where(tasks.c.queue == sa.bindparam("queue"))
        )
        counts: dict[str, dict[str, int]] = {}
        async with self._db.read("queue figures") as conn:
            # A queue name that is not UTF-8 (written by another program) comes back with
            # U+FFFD in it rather than failing the read.
            totals, garbled = await self._totals.read(conn, self._db.backend)
            for queue, number in totals.items():
                counts[queue] = {TaskState.COMPLETED.value: number}
            for state, query in zip(STATE_INDEXES, per_state, strict=True):
                for queue, number in (await undecodable.rows(conn, query))[0]:
                    queue_counts = counts.setdefault(str(queue), {TaskState.COMPLETED.value: 0})
                    queue_counts[state.value] = int(number)
                    queue_counts[TaskState.COMPLETED.value] -= int(number)
            oldest_at: dict[str, float] = {}
            if garbled:  # a name read with replacements cannot be looked up: group instead
                for queue, at in (await undecodable.rows(conn, _oldest_by_grouping()))[0]:
                    if at is not None:
                        oldest_at[str(queue)] = float(at)
            else:
                for queue in totals:
                    at = (await conn.execute(oldest, {"queue": queue})).scalar()
                    if at is not None:
                        oldest_at[str(queue)] = float(at)
        for queue_counts in counts.values():
            if queue_counts[TaskState.COMPLETED.value] <= 0:
                del queue_counts[TaskState.COMPLETED.value]
        return QueueFigures(
            counts=counts,
            oldest_pending_at=oldest_at,
        )


def _oldest_by_grouping() -> sa.Select[tuple[str, float]]:
    return (
        sa.select(tasks.c.queue, sa.func.min(tasks.c.created_at))
        .where(sa.text(f"state = '{TaskState.PENDING.value}'"))
        .group_by(tasks.c.queue)
    )


def task_row(task_id: str) -> sa.Select[Any]:
    """The task's row (:data:`~worker.storage.rows.RAW_COLUMNS`)."""
    return sa.select(*RAW_COLUMNS).where(tasks.c.id == task_id)


def priority_of(task_id: str) -> sa.Select[Any]:
    """The task's priority (no row: no such task)."""
    return sa.select(tasks.c.priority).where(tasks.c.id == task_id)


async def _priority(conn: AsyncConnection, task_id: str) -> int:
    """The priority of the task a page of pending tasks follows."""
    return read_results.after_priority(task_id, (await conn.execute(priority_of(task_id))).scalar())

"""The scan of tasks that ended, for what happens after a task's outcome is stored.

Webhook deliveries (:mod:`worker.storage.webhooks`) and callbacks
(:mod:`worker.storage.callbacks`) are made the same way: a scan reads ended tasks through the
partial index on ``finished_at`` (never writing to ``tasks``, so the hot path pays nothing),
keeps those it wants, and the caller creates its rows for them, one per ending of a task
(told apart by the task's ``finished_at``), and advances its scan mark, a one-row table, in
the same transaction. :class:`EndedScan` is that scan for one consumer; the runtime's
:class:`~worker.runtime.endings.EndingsCursor` decides how far each pass reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.storage.database import Database
from worker.storage.schema import tasks
from worker.storage.sql import greatest, json_rows


class EndedScan:
    """The scan of ended tasks that ``wanted`` selects, with ``columns`` of each, and its
    mark in the one-row table ``mark`` (``id`` 1, ``scanned_to_at``)."""

    def __init__(
        self,
        db: Database,
        mark: sa.Table,
        wanted: Callable[[], sa.ColumnElement[bool]],
        columns: Callable[[], Sequence[sa.ColumnElement[Any]]],
        label: str,
    ) -> None:
        self._db = db
        self._mark = mark
        self._wanted = wanted
        self._columns = columns
        self._label = label

    async def scanned_to(self) -> float:
        """Tasks that ended at or before this have their rows."""
        query = sa.select(self._mark.c.scanned_to_at).where(self._mark.c.id == 1)
        async with self._db.read(f"{self._label} scan mark") as conn:
            value = (await conn.execute(query)).scalar()
        return 0.0 if value is None else float(value)

    async def ended(
        self, after: float, upto: float | None, limit: int
    ) -> tuple[list[tuple[Any, ...]], bool, float | None]:
        """Wanted tasks with ``after < finished_at [<= upto]``, oldest first, each as
        ``(id, finished_at, *columns)``; whether ``limit`` cut the scan short; and how far it
        looked: the ``finished_at`` every ended task up to which has been considered (None
        when no task ended in the window).

        A cut scan still returns every wanted task that ended at the same instant as its
        last one (batch acknowledgements share one), so the next scan can start strictly
        after it.
        """
        columns = (tasks.c.id, tasks.c.finished_at, *self._columns())
        window = [tasks.c.finished_at.is_not(None), tasks.c.finished_at > after]
        if upto is not None:
            window.append(tasks.c.finished_at <= upto)
        wanted = self._wanted()
        # finished_at is set exactly on ended tasks: the index alone says how far they go.
        # Asked first, and the rows bounded by it: a task that ends between the two reads is
        # left for the next scan rather than passed over.
        farthest = sa.select(sa.func.max(tasks.c.finished_at)).where(*window)
        async with self._db.read(f"{self._label} scan") as conn:
            value = (await conn.execute(farthest)).scalar()
            if value is None:
                return [], False, None
            reached = float(value)
            query = (
                sa.select(*columns)
                .where(*window, tasks.c.finished_at <= reached, wanted)
                .order_by(tasks.c.finished_at)
                .limit(limit)
            )
            rows = [tuple(row) for row in (await conn.execute(query)).all()]
            cut = len(rows) >= limit
            if cut:
                reached = float(rows[-1][1])
                seen = {row[0] for row in rows}
                ties = sa.select(*columns).where(tasks.c.finished_at == reached, wanted)
                rows += [tuple(r) for r in (await conn.execute(ties)).all() if r[0] not in seen]
        return rows, cut, reached

    def advance(self, scanned_to: float) -> sa.Update:
        """The statement that moves the mark to ``scanned_to`` (never back), for the
        transaction that creates the rows of the tasks scanned."""
        return (
            sa.update(self._mark)
            .where(self._mark.c.id == 1)
            .values(scanned_to_at=greatest(self._mark.c.scanned_to_at, scanned_to))
        )


async def rows_of_endings(
    conn: AsyncConnection, table: sa.Table, endings: Iterable[tuple[str, float]]
) -> int:
    """How many rows ``table`` (with ``task_id`` and ``finished_at``) holds for these
    endings ``(task id, finished_at)``: to count an insert's rows where the driver does not
    count an executemany's (asyncpg)."""
    pairs = json_rows("endings", id="text", finished_at="float")
    query = (
        sa.select(sa.func.count())
        .select_from(table)
        .where(table.c.task_id == pairs.c.id, table.c.finished_at == pairs.c.finished_at)
    )
    text = json.dumps(sorted(set(endings)))  # each once
    return int((await conn.execute(query, {"endings": text})).scalar_one())

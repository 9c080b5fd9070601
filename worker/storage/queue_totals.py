"""Each queue's number of tasks, without counting every row on each read.

Counting a million tasks by queue walks a million index entries (about 90 ms on SQLite),
and the overview asks for it on every refresh. Task ids are ULIDs, so ids grow with time:
:class:`QueueTotals` keeps, between reads, each queue's count of the tasks whose id is at or
below a *mark* (a minute in the past), and on each read counts only the tasks above the
mark, through the primary key. A table's whole count is cheap (SQLite counts the pages of
its smallest index), so each read checks that the kept counts plus the new ones make it; a
purge (or any delete) or an id written below the mark after it was set (a task given an
old ULID, or made on a machine whose clock is more than a minute behind) breaks the sum,
and then everything is counted again. The counts are exact whenever the check passes,
which fails to notice only deletes exactly balanced by tasks inserted below the mark
between two reads; the next delete or insert below the mark corrects them.

On PostgreSQL the whole count reads the table as grouping does, so the gain there is the
grouping's sort, not the walk.
"""

from __future__ import annotations

import logging
import time

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.core.ids import id_floor
from worker.storage import undecodable
from worker.storage.backend import Backend
from worker.storage.schema import tasks

log = logging.getLogger(__name__)

#: How far behind the clock the mark stays, so that ids made a little earlier elsewhere
#: (another process, another machine's clock) and committed since are still above it.
MARK_LAG_S = 60.0

_everything = sa.select(sa.func.count()).select_from(tasks)
_by_queue = sa.select(tasks.c.queue, sa.func.count()).group_by(tasks.c.queue)


class QueueTotals:
    """Each queue's task count, kept up to date incrementally between reads."""

    def __init__(self) -> None:
        self._mark: str | None = None
        self._below: dict[str, int] = {}

    async def read(self, conn: AsyncConnection, backend: Backend) -> tuple[dict[str, int], bool]:
        """Each queue's count of tasks, and whether some queue name was read with
        replacements (text that is not UTF-8; then nothing is kept for the next read)."""
        above = backend.queue_counts_above()
        mark = id_floor(time.time() - MARK_LAG_S)
        if self._mark is not None:
            since = self._mark
            total = int((await conn.execute(_everything)).scalar_one())
            rows, garbled = await undecodable.rows(
                conn, above.bindparams(since=since, mark=max(mark, since))
            )
            if not garbled and sum(self._below.values()) + sum(int(n) for _, n, _ in rows) == total:
                counts = dict(self._below)
                below = dict(self._below)
                for queue, number, at_or_below in rows:
                    counts[queue] = counts.get(queue, 0) + int(number)
                    below[queue] = below.get(queue, 0) + int(at_or_below or 0)
                self._below, self._mark = below, max(mark, since)
                return {q: n for q, n in counts.items() if n}, False
            log.debug("tasks were deleted or written below the mark: counting every queue")
        return await self._count_all(conn, above, mark)

    async def _count_all(
        self, conn: AsyncConnection, above: sa.TextClause, mark: str
    ) -> tuple[dict[str, int], bool]:
        rows, garbled = await undecodable.rows(conn, _by_queue)
        counts = {str(queue): int(number) for queue, number in rows}
        self._mark, self._below = None, {}
        if garbled:
            return counts, True
        # What lies above the mark is counted again on the next read: keep what is below.
        newer, _ = await undecodable.rows(conn, above.bindparams(since=mark, mark=mark))
        below = dict(counts)
        for queue, number, _ in newer:
            below[queue] = below.get(queue, 0) - int(number)
        # Rows written between the two statements would make ``below`` wrong: the next
        # read's check catches that (its sum no longer matches) and counts again.
        self._mark, self._below = mark, below
        return counts, False

"""Each queue's number of tasks, without counting every row on each read.

Counting a million tasks by queue walks a million index entries (about 90 ms on SQLite),
and the overview asks for it on every refresh. Task ids are ULIDs, so ids grow with time:
:class:`QueueTotals` keeps, between reads, each queue's count of the tasks whose id is at or
below a *mark*, and on each read counts only the tasks above the mark, through the primary
key. The mark trails the newest tasks: it is a minute in the past, or lower still, the id
:data:`KEEP_ABOVE` tasks from the newest, so that a burst of tasks is walked once at most.

A table's whole count is cheap on SQLite (it counts the pages of its smallest index), so
each read checks that the kept counts plus the new ones make it. A purge (or any delete),
or a task written below the mark after it was set (a task given an old ULID, a transaction
that commits well after it made its ids, a machine whose clock is behind) breaks the sum,
and then everything is counted again, as it is when more than :data:`MAX_WALK` tasks came
since the last read. The counts are exact whenever the check passes, which fails to notice
only deletes exactly balanced by tasks inserted below the mark between two reads; the next
delete or insert below the mark corrects them.

On PostgreSQL the whole count reads the table as grouping does, so the gain there is the
grouping's sort, not the walk.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.core.ids import id_floor
from worker.storage import undecodable
from worker.storage.backend import Backend
from worker.storage.schema import tasks

log = logging.getLogger(__name__)

#: How far behind the clock the mark stays at least, so that tasks made a little earlier
#: elsewhere and committed since are still above it.
MARK_LAG_S = 60.0
#: The mark is never lower than the id this many tasks from the newest one.
KEEP_ABOVE = 5_000
#: More new tasks than this since the last read are counted by queue, not walked.
MAX_WALK = 100_000

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
        # Reads may overlap (a page and a scrape, each on its own connection): each works
        # from the mark and counts as they were when it began, never from another read's
        # half-made ones, and keeps its own only if no other read kept some meanwhile.
        since, kept = self._mark, self._below
        if since is not None:
            total = int((await conn.execute(_everything)).scalar_one())
            new = total - sum(kept.values())  # unless tasks were deleted
            if 0 <= new <= MAX_WALK:
                mark = max(await _next_mark(conn), since)
                rows, garbled = await undecodable.rows(
                    conn, above.bindparams(since=since, mark=mark)
                )
                if not garbled and sum(int(n) for _, n, _ in rows) == new:
                    counts, below = dict(kept), dict(kept)
                    for queue, number, at_or_below in rows:
                        counts[queue] = counts.get(queue, 0) + int(number)
                        below[queue] = below.get(queue, 0) + int(at_or_below or 0)
                    if self._below is kept:
                        self._below, self._mark = below, mark
                    return {q: n for q, n in counts.items() if n}, False
            log.debug("tasks deleted, written below the mark or many new: counting every queue")
        return await self._count_all(conn, above)

    async def _count_all(
        self, conn: AsyncConnection, above: sa.TextClause
    ) -> tuple[dict[str, int], bool]:
        rows, garbled = await undecodable.rows(conn, _by_queue)
        counts = {str(queue): int(number) for queue, number in rows}
        if garbled:
            self._mark, self._below = None, {}
            return counts, True
        # What lies above the mark is counted again on the next read: keep what is below.
        mark = await _next_mark(conn)
        newer, _ = await undecodable.rows(conn, above.bindparams(since=mark, mark=mark))
        below = dict(counts)
        for queue, number, _ in newer:
            below[queue] = below.get(queue, 0) - int(number)
        # Tasks written between the statements would make ``below`` wrong: the next read's
        # check catches that (its sum no longer matches) and counts again.
        self._mark, self._below = mark, below
        return counts, False


async def _next_mark(conn: AsyncConnection) -> str:
    floor = id_floor(time.time() - MARK_LAG_S)
    kept_above = sa.select(tasks.c.id).order_by(tasks.c.id.desc()).offset(KEEP_ABOVE).limit(1)
    kept: Any = (await conn.execute(kept_above)).scalar()
    return floor if kept is None else max(floor, str(kept))

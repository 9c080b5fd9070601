"""``EndingsCursor``: how far the scans of ended tasks have read, for webhooks and callbacks.

Each round it scans twice over tasks that ended: at once (for low latency, from a mark kept
in memory) and again once ``settle_s`` has passed (from the mark in the database, which only
then advances). A task's ``finished_at`` is read from the clock before its transaction waits
for the write lock, so it can commit up to the busy timeout later, behind a later one; the
second pass finds such tasks. Creating rows is idempotent (one per task and ending, an ending
being told by the task's ``finished_at``), so neither pass nor several workers can make one
twice, while a task that was resumed and ended again gets new ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

from worker.core.clock import Clock

F = TypeVar("F")

#: Added to the busy timeout: how late a finished task may still commit.
SETTLE_MARGIN_S = 5.0


class EndingsSource(Protocol[F]):
    """A store whose rows are made from ended tasks (webhook deliveries, callbacks)."""

    async def scanned_to(self) -> float:
        """The mark in the database: tasks that ended at or before it have their rows."""
        ...

    async def finished(
        self, after: float, upto: float | None, limit: int
    ) -> tuple[list[F], bool, float | None]:
        """Wanted tasks that ended in ``(after, upto]``, whether ``limit`` cut the scan, and
        how far it looked (see :meth:`worker.storage.endings.EndedScan.ended`)."""
        ...

    async def add(self, found: Sequence[F], now: float, scanned_to: float | None) -> int:
        """Create the missing rows of ``found`` and move the mark to ``scanned_to`` (when
        given), in one transaction; how many rows were created."""
        ...


class EndingsCursor(Generic[F]):
    """The two passes of a scan of ended tasks (see the module docstring)."""

    def __init__(
        self, source: EndingsSource[F], clock: Clock, *, settle_s: float, batch: int
    ) -> None:
        self._source = source
        self._clock = clock
        self.settle_s = settle_s
        self._batch = batch
        self._scanned_to: float | None = None  # the database's mark, as last written
        self._seen_to: float | None = None  # how far this cursor has looked
        #: The last quick scan was cut short: more tasks have ended than it read.
        self.behind = False

    async def collect(self) -> int:
        """One round of both passes; returns how many rows were created."""
        source = self._source
        if self._scanned_to is None or self._seen_to is None:
            self._scanned_to = self._seen_to = await source.scanned_to()
        fresh, self.behind, reached = await source.finished(self._seen_to, None, self._batch)
        if reached is not None:
            self._seen_to = reached
        upto = min(self._clock() - self.settle_s, self._seen_to)
        settled: list[F] = []
        mark: float | None = None
        if upto > self._scanned_to:
            settled, cut, reached = await source.finished(self._scanned_to, upto, self._batch)
            mark = reached if cut and reached is not None else upto
        created = await source.add([*fresh, *settled], self._clock(), mark)
        if mark is not None:
            self._scanned_to = mark
        return created

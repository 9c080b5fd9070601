"""A leased outbox: rows of work made after a task ended, claimed one attempt at a time.

Webhook deliveries (:mod:`worker.storage.webhooks`) and callbacks
(:mod:`worker.storage.callbacks`) are both kept this way, each in its own table with the
columns ``id``, ``task_id``, ``finished_at``, ``ending``, ``state``, ``attempts``,
``lease_id``, ``next_attempt_at``, ``last_error`` and ``updated_at``:

- rows are created by the scan of ended tasks (:class:`~worker.storage.endings.EndedScan`),
  one per ending of a task, due at once, in the transaction that advances the scan's mark;
- a claim is one ``UPDATE ... WHERE id IN (SELECT ... LIMIT n) RETURNING`` that counts the
  attempt, sets a fresh lease id and pushes ``next_attempt_at`` to the lease's expiry, so a
  row whose worker died is due again by itself;
- an outcome is written only while that lease is still the row's (compare-and-set), so two
  workers never both record one attempt.

What differs between the two (which tasks are wanted, what a row holds, what an outcome
records) stays in their stores; :class:`LeasedOutbox` is the rest, written once.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from worker.storage.backend import Backend, Insert
from worker.storage.database import Database
from worker.storage.endings import EndedScan, rows_of_endings

PENDING = "pending"
"""The state of a row that is still to be done (both tables use the same word)."""


class LeasedOutbox:
    """The leased rows of ``table``, made for the tasks ``scan`` finds, with ``insert``
    (built once per dialect by ``make_insert``) creating one row per parameter set."""

    def __init__(
        self,
        db: Database,
        table: sa.Table,
        scan: EndedScan,
        make_insert: Callable[[Backend], Insert],
        label: str,
    ) -> None:
        self._db = db
        self._table = table
        self._scan = scan
        self._make_insert = make_insert
        self._label = label
        self._insert: Insert | None = None

    @property
    def scan(self) -> EndedScan:
        return self._scan

    async def add(
        self,
        rows: Sequence[dict[str, Any]],
        endings: Sequence[tuple[str, float]],
        scanned_to: float | None,
    ) -> int:
        """Create the missing rows (each parameter set of the insert, for the task endings
        ``(task id, finished_at)`` they belong to) and advance the scan mark to
        ``scanned_to`` (unless None); one transaction. Returns how many rows were created."""
        if not rows and scanned_to is None:
            return 0
        created = 0
        async with self._db.write(self._label, lock_first=False) as conn:
            if rows:
                if self._insert is None:
                    self._insert = self._make_insert(self._db.backend)
                # A driver that does not count an executemany's rows (asyncpg): count them.
                counted = conn.dialect.supports_sane_multi_rowcount
                before = 0 if counted else await rows_of_endings(conn, self._table, endings)
                created = (await conn.execute(self._insert, list(rows))).rowcount
                if not counted:
                    created = await rows_of_endings(conn, self._table, endings) - before
            if scanned_to is not None:
                await conn.execute(self._scan.advance(scanned_to))
        return max(created, 0)

    async def claim(
        self, now: float, lease_s: float, limit: int, returning: Sequence[str]
    ) -> list[tuple[Any, ...]]:
        """Claim up to ``limit`` due rows for one attempt each, oldest due first; each row
        read back as its ``id``, then ``returning`` (column names), then ``attempts`` and
        ``lease_id``, sorted by id."""
        c = self._table.c
        due = (
            sa.select(c.id)
            .where(c.state == PENDING, c.next_attempt_at <= now)
            .order_by(c.next_attempt_at)
            .limit(limit)
        )
        prefix = secrets.token_hex(8) + ":"
        statement = (
            sa.update(self._table)
            .where(c.id.in_(due.scalar_subquery()), c.state == PENDING)
            .values(
                attempts=c.attempts + 1,
                lease_id=sa.literal(prefix) + sa.cast(c.id, sa.String),
                next_attempt_at=now + lease_s,
                updated_at=now,
            )
            .returning(c.id, *(c[name] for name in returning), c.attempts, c.lease_id)
        )
        # A read first: an idle worker asks every second, and a write transaction would take
        # the write lock from the producers each time to find nothing.
        async with self._db.read(f"{self._label} claim") as conn:
            if (await conn.execute(due.limit(1))).first() is None:
                return []
        async with self._db.write(f"{self._label} claim", lock_first=False) as conn:
            rows = (await conn.execute(statement)).all()
        return sorted((tuple(row) for row in rows), key=lambda row: int(row[0]))

    async def settle(self, row_id: int, lease_id: str, values: dict[str, Any]) -> bool:
        """Write an attempt's outcome ``values`` (and drop the lease) while the claim's lease
        is still the row's; False if it was lost meanwhile."""
        c = self._table.c
        statement = (
            sa.update(self._table)
            .where(c.id == row_id, c.lease_id == lease_id, c.state == PENDING)
            .values(lease_id=None, **values)
        )
        async with self._db.write(f"{self._label} outcome", lock_first=False) as conn:
            return bool((await conn.execute(statement)).rowcount)

    @staticmethod
    def failure(
        values: dict[str, Any], failed_state: str, retry_at: float | None
    ) -> dict[str, Any]:
        """A failed attempt's outcome: ``values`` plus due again at ``retry_at``, or
        ``failed_state`` for good when it is None."""
        if retry_at is None:
            return {**values, "state": failed_state}
        return {**values, "next_attempt_at": retry_at}

    async def for_task(self, task_id: str, order: Sequence[str]) -> list[sa.Row[Any]]:
        """A task's rows, ordered by the columns ``order``."""
        async with self._db.read(f"{self._label} rows") as conn:
            return list((await conn.execute(rows_of_task(self._table, task_id, order))).all())


def rows_of_task(table: sa.Table, task_id: str, order: Sequence[str]) -> sa.Select[Any]:
    """The rows of ``table`` for a task, ordered by the columns ``order``."""
    c = table.c
    return sa.select(table).where(c.task_id == task_id).order_by(*(c[name] for name in order))

"""All callback SQL: the scan of ended tasks that name one, their rows, claims and outcomes.

Made as webhook deliveries are (:mod:`worker.storage.webhooks`): the scan
(:mod:`worker.storage.endings`) finds tasks that completed with an ``on_success`` or were
discarded with an ``on_failure``, and one row is created per ending of such a task, due at
once; the hot path never touches these tables. A claim sets a fresh lease id and pushes
``next_attempt_at`` to the lease's expiry, so a callback whose worker died is due again by
itself; an outcome is written only while that lease is still the row's (compare-and-set).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from worker.core.callbacks import (
    CallbackEvent,
    CallbackState,
    ClaimedCallback,
    EndedTask,
    TaskCallback,
)
from worker.core.states import TaskState
from worker.storage.backend import Backend, Insert
from worker.storage.database import Database
from worker.storage.endings import EndedScan, rows_of_endings
from worker.storage.schema import CALLBACK_TASKS, callback_scan, task_callbacks, tasks

_PENDING = CallbackState.PENDING.value
_C = task_callbacks.c
_COMPLETED = TaskState.COMPLETED.value
_DISCARDED = TaskState.DISCARDED.value


def _wanted() -> sa.ColumnElement[bool]:
    """Ended tasks that name a callback for how they ended. The partial index's predicate
    is one of the terms, so the scan walks that index (the few tasks with callbacks), not
    every finished task's row."""
    return sa.and_(
        sa.text(CALLBACK_TASKS),
        sa.or_(
            sa.and_(tasks.c.state == _COMPLETED, tasks.c.on_success.is_not(None)),
            sa.and_(tasks.c.state == _DISCARDED, tasks.c.on_failure.is_not(None)),
        ),
    )


def _nothing_more() -> list[sa.ColumnElement[Any]]:
    return []


def _insert(backend: Backend) -> Insert:
    """One callback row per parameter set (``task_id``, ``finished_at``, ``now``), only while
    the task still ends at ``finished_at`` as the scan saw it; an existing row for that ending
    is left alone. ``ending`` counts on from the task's rows of earlier endings."""
    task_id = sa.bindparam("task_id", type_=sa.String)
    finished_at = sa.bindparam("finished_at", type_=sa.Float)
    now = sa.bindparam("now", type_=sa.Float)
    earlier = (
        sa.select(sa.func.count())
        .select_from(task_callbacks)
        .where(_C.task_id == task_id)
        .scalar_subquery()
    )
    completed = tasks.c.state == _COMPLETED
    row = sa.select(
        task_id,
        sa.case((completed, CallbackEvent.SUCCESS.value), else_=CallbackEvent.FAILURE.value),
        sa.case((completed, tasks.c.on_success), else_=tasks.c.on_failure),
        finished_at, earlier + 1, sa.literal(_PENDING), sa.literal(0), now, now, now,
    ).where(tasks.c.id == task_id, tasks.c.finished_at == finished_at, _wanted())  # fmt: skip
    columns = [
        "task_id", "event", "target", "finished_at", "ending",
        "state", "attempts", "next_attempt_at", "created_at", "updated_at",
    ]  # fmt: skip
    return backend.insert(task_callbacks).from_select(columns, row).on_conflict_do_nothing()


_INSERTS: dict[str, Insert] = {}


class CallbackStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._scan = EndedScan(db, callback_scan, _wanted, _nothing_more, "callback")

    # -- the scan of ended tasks ---------------------------------------------------------

    async def scanned_to(self) -> float:
        return await self._scan.scanned_to()

    async def finished(
        self, after: float, upto: float | None, limit: int
    ) -> tuple[list[EndedTask], bool, float | None]:
        """Tasks with a callback to run that ended in ``(after, upto]`` (see
        :meth:`worker.storage.endings.EndedScan.ended`)."""
        rows, cut, reached = await self._scan.ended(after, upto, limit)
        return [EndedTask(str(row[0]), float(row[1])) for row in rows], cut, reached

    async def add(self, found: Sequence[EndedTask], now: float, scanned_to: float | None) -> int:
        """Create the missing callback rows (due now) and advance the scan mark; one
        transaction. Returns how many rows were created."""
        rows = [
            {"task_id": task.task_id, "finished_at": task.finished_at, "now": now} for task in found
        ]
        if not rows and scanned_to is None:
            return 0
        created = 0
        async with self._db.write("callbacks", lock_first=False) as conn:
            if rows:
                insert = _INSERTS.get(self._db.dialect)
                if insert is None:
                    insert = _INSERTS[self._db.dialect] = _insert(self._db.backend)
                # A driver that does not count an executemany's rows (asyncpg): count them.
                counted = conn.dialect.supports_sane_multi_rowcount
                endings = [(task.task_id, task.finished_at) for task in found]
                before = 0 if counted else await rows_of_endings(conn, task_callbacks, endings)
                created = (await conn.execute(insert, rows)).rowcount
                if not counted:
                    created = await rows_of_endings(conn, task_callbacks, endings) - before
            if scanned_to is not None:
                await conn.execute(self._scan.advance(scanned_to))
        return max(created, 0)

    # -- attempts ------------------------------------------------------------------------

    async def claim(self, now: float, lease_s: float, limit: int) -> list[ClaimedCallback]:
        """Claim up to ``limit`` due callbacks for one attempt each, oldest due first."""
        due = (
            sa.select(_C.id)
            .where(_C.state == _PENDING, _C.next_attempt_at <= now)
            .order_by(_C.next_attempt_at)
            .limit(limit)
        )
        prefix = secrets.token_hex(8) + ":"
        statement = (
            sa.update(task_callbacks)
            .where(_C.id.in_(due.scalar_subquery()), _C.state == _PENDING)
            .values(
                attempts=_C.attempts + 1,
                lease_id=sa.literal(prefix) + sa.cast(_C.id, sa.String),
                next_attempt_at=now + lease_s,
                updated_at=now,
            )
            .returning(
                _C.id, _C.task_id, _C.event, _C.target, _C.attempts, _C.lease_id, _C.finished_at
            )
        )
        # A read first: an idle worker asks every second, and a write transaction would take
        # the write lock from the producers each time to find nothing.
        async with self._db.read("callback claim") as conn:
            if (await conn.execute(due.limit(1))).first() is None:
                return []
        async with self._db.write("callback claim", lock_first=False) as conn:
            rows = (await conn.execute(statement)).all()
        return sorted(
            (
                ClaimedCallback(
                    int(i), str(t), CallbackEvent(e), str(g), int(a), str(lease), float(f)
                )
                for i, t, e, g, a, lease, f in rows
            ),
            key=lambda c: c.id,
        )

    async def done(self, claimed: ClaimedCallback, now: float) -> bool:
        """pending -> done; False if the claim's lease was lost meanwhile."""
        values = {"state": CallbackState.DONE.value, "last_error": None, "done_at": now}
        return await self._settle(claimed, {**values, "updated_at": now})

    async def failed(
        self, claimed: ClaimedCallback, error: str, now: float, retry_at: float | None
    ) -> bool:
        """Record a failed attempt: due again at ``retry_at``, or failed for good (None)."""
        values: dict[str, Any] = {"last_error": error, "updated_at": now}
        if retry_at is None:
            values["state"] = CallbackState.FAILED.value
        else:
            values["next_attempt_at"] = retry_at
        return await self._settle(claimed, values)

    async def _settle(self, claimed: ClaimedCallback, values: dict[str, Any]) -> bool:
        statement = (
            sa.update(task_callbacks)
            .where(_C.id == claimed.id, _C.lease_id == claimed.lease_id, _C.state == _PENDING)
            .values(lease_id=None, **values)
        )
        async with self._db.write("callback outcome", lock_first=False) as conn:
            return bool((await conn.execute(statement)).rowcount)

    # -- reads ---------------------------------------------------------------------------

    async def for_task(self, task_id: str) -> list[TaskCallback]:
        query = sa.select(task_callbacks).where(_C.task_id == task_id).order_by(_C.ending)
        async with self._db.read("task callbacks") as conn:
            rows = (await conn.execute(query)).all()
        return [_callback(row._mapping) for row in rows]


def _callback(row: Any) -> TaskCallback:
    pending = row["state"] == _PENDING
    return TaskCallback(
        task_id=row["task_id"],
        event=CallbackEvent(row["event"]),
        target=row["target"],
        state=CallbackState(row["state"]),
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"] if pending else None,
        last_error=row["last_error"],
        done_at=row["done_at"],
        finished_at=row["finished_at"],
        ending=row["ending"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )

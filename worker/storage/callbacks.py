"""All callback SQL: the scan of ended tasks that name one, their rows, claims and outcomes.

Made as webhook deliveries are (:mod:`worker.storage.webhooks`): the scan
(:mod:`worker.storage.endings`) finds tasks that completed with an ``on_success`` or were
discarded with an ``on_failure``, and one row is created per ending of such a task, due at
once; the hot path never touches these tables. Rows are claimed and settled as a
:class:`~worker.storage.outbox.LeasedOutbox`: a callback whose worker died is due again by
itself, and an outcome is written only while the attempt's lease is still the row's.
"""

from __future__ import annotations

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
from worker.storage import read_results
from worker.storage.backend import Backend, Insert
from worker.storage.database import Database
from worker.storage.endings import EndedScan
from worker.storage.outbox import PENDING, LeasedOutbox
from worker.storage.schema import CALLBACK_TASKS, callback_scan, task_callbacks, tasks

_PENDING = PENDING
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


class CallbackStore:
    def __init__(self, db: Database) -> None:
        scan = EndedScan(db, callback_scan, _wanted, _nothing_more, "callback")
        self._outbox = LeasedOutbox(db, task_callbacks, scan, _insert, "callbacks")

    # -- the scan of ended tasks ---------------------------------------------------------

    async def scanned_to(self) -> float:
        return await self._outbox.scan.scanned_to()

    async def finished(
        self, after: float, upto: float | None, limit: int
    ) -> tuple[list[EndedTask], bool, float | None]:
        """Tasks with a callback to run that ended in ``(after, upto]`` (see
        :meth:`worker.storage.endings.EndedScan.ended`)."""
        rows, cut, reached = await self._outbox.scan.ended(after, upto, limit)
        return [EndedTask(str(row[0]), float(row[1])) for row in rows], cut, reached

    async def add(self, found: Sequence[EndedTask], now: float, scanned_to: float | None) -> int:
        """Create the missing callback rows (due now) and advance the scan mark; one
        transaction. Returns how many rows were created."""
        rows = [
            {"task_id": task.task_id, "finished_at": task.finished_at, "now": now} for task in found
        ]
        endings = [(task.task_id, task.finished_at) for task in found]
        return await self._outbox.add(rows, endings, scanned_to)

    # -- attempts ------------------------------------------------------------------------

    async def claim(self, now: float, lease_s: float, limit: int) -> list[ClaimedCallback]:
        """Claim up to ``limit`` due callbacks for one attempt each, oldest due first."""
        rows = await self._outbox.claim(
            now, lease_s, limit, ("task_id", "event", "target", "finished_at")
        )
        return [
            ClaimedCallback(int(i), str(t), CallbackEvent(e), str(g), int(a), str(lease), float(f))
            for i, t, e, g, f, a, lease in rows
        ]

    async def done(self, claimed: ClaimedCallback, now: float) -> bool:
        """pending -> done; False if the claim's lease was lost meanwhile."""
        values = {
            "state": CallbackState.DONE.value,
            "last_error": None,
            "done_at": now,
            "updated_at": now,
        }
        return await self._outbox.settle(claimed.id, claimed.lease_id, values)

    async def failed(
        self, claimed: ClaimedCallback, error: str, now: float, retry_at: float | None
    ) -> bool:
        """Record a failed attempt: due again at ``retry_at``, or failed for good (None)."""
        values = {"last_error": error, "updated_at": now}
        outcome = LeasedOutbox.failure(values, CallbackState.FAILED.value, retry_at)
        return await self._outbox.settle(claimed.id, claimed.lease_id, outcome)

    # -- reads ---------------------------------------------------------------------------

    async def for_task(self, task_id: str) -> list[TaskCallback]:
        rows = await self._outbox.for_task(task_id, ("ending",))
        return [read_results.callback(row._mapping) for row in rows]

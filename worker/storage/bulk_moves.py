"""Bulk actions in SQL: cancel, resume, run now, hold or release many tasks at once, by id
or by a :class:`~worker.core.selection.TaskFilter`.

Each action is the single-task moves' own compare-and-set (:func:`worker.storage.transitions.move`
from the transition table, with the same values), run on a batch of ids in one transaction:
a task whose state does not allow it is left alone and counted as skipped. A selection by id
is one batch, all or nothing; a filter is walked in id order, :data:`BATCH` tasks per
transaction (each batch's ids read in its transaction), so a million matching tasks never
sit in memory nor hold the write lock for long.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from worker.core.selection import BulkAction, BulkOutcome, TaskFilter
from worker.core.states import target
from worker.storage import dependencies, selection
from worker.storage.database import Database
from worker.storage.schema import tasks
from worker.storage.sql import json_values
from worker.storage.transitions import (
    ask_to_stop,
    cancel_values,
    move,
    operator_values,
    resume_values,
)

#: Tasks per transaction when an action applies to a filter.
BATCH = 1000

#: One step of an action: the transition, what it sets, and what else a task must hold for
#: the step to change something (a held task is not held again).
Step = tuple[str, dict[str, Any], tuple[ColumnElement[bool], ...]]


def steps(action: BulkAction, now: float, default_max_attempts: int) -> list[Step]:
    """The transitions of ``action``. ``resume`` is what ``wq resume`` does: a discarded task
    runs again, a held one is released. A cancel also asks running tasks to stop
    (:func:`~worker.storage.transitions.ask_to_stop`, after these steps)."""
    held, not_held = tasks.c.held.is_(True), tasks.c.held.is_(False)
    if action == "cancel":
        return [("cancel", cancel_values(now, None), ())]
    if action == "resume":
        return [
            ("resume", resume_values(now, default_max_attempts), ()),
            ("unhold", operator_values("unhold", now), (held,)),
        ]
    if action == "hold":
        return [("hold", operator_values("hold", now), (not_held,))]
    if action == "release":
        return [("unhold", operator_values("unhold", now), (held,))]
    return [("run_now", operator_values("run_now", now), (tasks.c.schedule_at > now,))]


class BulkMoveStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def apply(
        self,
        action: BulkAction,
        *,
        ids: Sequence[str] | None,
        chosen: TaskFilter | None,
        now: float,
        default_max_attempts: int,
        batch: int = BATCH,
    ) -> BulkOutcome:
        """Apply ``action`` to the tasks ``ids`` names (one transaction) or to those
        ``chosen`` matches (in batches); what it did."""
        outcome = BulkOutcome(action)
        name = f"bulk {action}"
        if ids is not None:
            wanted = list(dict.fromkeys(ids))
            async with self._db.write(name, lock_first=False) as conn:
                query = sa.select(tasks.c.id).where(_among())
                listed = {"ids": json.dumps(wanted)}
                found = {str(row[0]) for row in (await conn.execute(query, listed)).all()}
                outcome.not_found = [i for i in wanted if i not in found]
                changed = await self._moves(
                    conn,
                    action,
                    sorted(found),
                    now=now,
                    default_max_attempts=default_max_attempts,
                    outcome=outcome,
                )
            outcome.matched = len(found)
            outcome.skipped_ids = [i for i in wanted if i in found and i not in changed]
            outcome.changed = len(changed)
            outcome.skipped = len(outcome.skipped_ids)
            return outcome
        assert chosen is not None
        after: str | None = None
        while True:
            async with self._db.write(name, lock_first=False) as conn:
                page = selection.page_of_ids(chosen, after_id=after, limit=batch)
                found_ids = [str(row[0]) for row in (await conn.execute(page)).all()]
                changed = await self._moves(
                    conn,
                    action,
                    found_ids,
                    now=now,
                    default_max_attempts=default_max_attempts,
                    outcome=outcome,
                )
            outcome.matched += len(found_ids)
            outcome.changed += len(changed)
            outcome.skipped += len(found_ids) - len(changed)
            if len(found_ids) < batch:
                return outcome
            after = found_ids[-1]

    async def _moves(
        self,
        conn: AsyncConnection,
        action: BulkAction,
        ids: list[str],
        *,
        now: float,
        default_max_attempts: int,
        outcome: BulkOutcome,
    ) -> set[str]:
        """Run ``action``'s steps on ``ids`` in ``conn``'s transaction; the ids changed."""
        if not ids:
            return set()
        changed: set[str] = set()
        listed = {"ids": json.dumps(ids)}
        for operation, values, extra in steps(action, now, default_max_attempts):
            statement = move(operation, sa.and_(_among(), *extra), values)
            rows = (await conn.execute(statement, listed)).all()
            changed.update(str(row[0]) for row in rows)
            await dependencies.settle_rows_on(
                conn, self._db.statements, target(operation), rows, now
            )
        if action == "cancel":
            fresh = sa.and_(_among(), tasks.c.cancel_requested_at.is_(None))
            asking = await conn.execute(ask_to_stop(fresh, now), listed)
            asked = [str(row[0]) for row in asking.all()]
            if asked:
                changed.update(asked)
                wake = self._db.backend.wake("cancels") if self._db.notifies else None
                if wake is not None:  # their workers may be on other machines
                    await conn.execute(wake)
            outcome.cancel_requested += len(asked)
        return changed


def _among() -> ColumnElement[bool]:
    """The tasks of the JSON list of ids in ``:ids`` (passed when the statement runs: a
    value bound into the construct would be cached with the statement's compiled form)."""
    return tasks.c.id.in_(json_values("ids"))

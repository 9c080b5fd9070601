"""All schedule SQL: declaring, reading, removing, and firing a tick with its tasks.

A tick is enqueued exactly once however many workers look at once: the worker that fires a
schedule advances its ``next_run_at`` with a compare-and-set on the value it read
(``UPDATE schedules ... WHERE name = :name AND next_run_at = :expected``) in the transaction
that inserts the tick's tasks. Of two workers that read the same ``next_run_at``, the second's
update matches no row (SQLite: the writes take turns; PostgreSQL: it waits for the first's row
lock, then sees the new value) and it inserts nothing. A declaration reads the row locked
(``FOR UPDATE``; SQLite's ``BEGIN IMMEDIATE``), so it never moves ``next_run_at`` under a
fire either.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from worker.core.schedules import Schedule, ScheduleTaskOptions, ScheduleTiming
from worker.storage.database import Database
from worker.storage.enqueue_claim import TaskStore
from worker.storage.rows import ROW_ID, InsertRow
from worker.storage.schema import schedules
from worker.storage.txn import Txn

_S = schedules.c
#: Every column, JSON ones as their text (parsed here on either backend: PostgreSQL's
#: arrive as text, see :mod:`worker.storage.database`).
_COLUMNS = tuple(
    sa.type_coerce(c, sa.Text).label(c.name) if isinstance(c.type, sa.JSON) else c for c in _S
)

#: ``existing schedule or None -> next_run_at`` for a declaration (the queue's policy).
RunPlan = Callable[[Schedule | None], float]


def _advance() -> sa.Update:
    """The compare-and-set that claims a tick (see the module docstring)."""
    return (
        sa.update(schedules)
        .where(
            _S.name == sa.bindparam("name", type_=sa.String),
            _S.next_run_at == sa.bindparam("expected", type_=sa.Float),
        )
        .values(
            next_run_at=sa.bindparam("next_run_at", type_=sa.Float),
            last_tick_at=sa.bindparam("last_tick_at", type_=sa.Float),
            last_task_id=sa.func.coalesce(
                sa.bindparam("last_task_id", type_=sa.String), _S.last_task_id
            ),
            updated_at=sa.bindparam("now", type_=sa.Float),
        )
        .returning(_S.name)
    )


def _last_task() -> sa.Update:
    return (
        sa.update(schedules)
        .where(_S.name == sa.bindparam("name", type_=sa.String))
        .values(last_task_id=sa.bindparam("last_task_id", type_=sa.String))
    )


class ScheduleStore:
    def __init__(self, db: Database, tasks: TaskStore) -> None:
        self._db = db
        self._tasks = tasks

    async def save(self, schedule: Schedule, now: float, plan: RunPlan) -> Schedule:
        """Insert or update the schedule of ``schedule.name``; returns it as stored.

        ``next_run_at`` is ``plan(existing)``. A declaration the same as the stored one
        writes nothing (every worker may declare its schedules as it starts)."""
        for _ in range(2):
            async with self._db.write("save schedule") as conn:
                query = sa.select(*_COLUMNS).where(_S.name == schedule.name).with_for_update()
                row = (await conn.execute(query)).first()
                existing = None if row is None else _schedule(row._mapping)
                if existing is not None and existing.definition() == schedule.definition():
                    return existing
                saved = schedule.model_copy(
                    update={
                        "next_run_at": plan(existing),
                        "last_tick_at": None if existing is None else existing.last_tick_at,
                        "last_task_id": None if existing is None else existing.last_task_id,
                        "created_at": now if existing is None else existing.created_at,
                        "updated_at": now,
                    }
                )
                values = _values(saved)
                if existing is not None:
                    await conn.execute(
                        sa.update(schedules).where(_S.name == schedule.name).values(values)
                    )
                    return saved
                insert = (
                    self._db.backend.insert(schedules)
                    .values(values)
                    .on_conflict_do_nothing()
                    .returning(_S.name)
                )
                if (await conn.execute(insert)).first() is not None:
                    return saved
            # Declared by another process meanwhile: again, now with its row to lock.
        raise AssertionError(f"schedule {schedule.name!r} neither inserted nor found")

    async def remove(self, name: str) -> bool:
        async with self._db.write("remove schedule", lock_first=False) as conn:
            result = await conn.execute(sa.delete(schedules).where(_S.name == name))
        return bool(result.rowcount)

    async def get(self, name: str) -> Schedule | None:
        async with self._db.read("get schedule") as conn:
            row = (await conn.execute(sa.select(*_COLUMNS).where(_S.name == name))).first()
        return None if row is None else _schedule(row._mapping)

    async def all(self) -> list[Schedule]:
        async with self._db.read("list schedules") as conn:
            rows = (await conn.execute(sa.select(*_COLUMNS).order_by(_S.name))).all()
        return [_schedule(row._mapping) for row in rows]

    async def due(
        self, now: float, limit: int, after: tuple[float, str] | None = None
    ) -> list[Schedule]:
        """Schedules whose next tick is due at ``now``, the most overdue first; a page of
        ``limit``, after the ``(next_run_at, name)`` of the last one of the page before."""
        query = sa.select(*_COLUMNS).where(_S.next_run_at <= now)
        if after is not None:
            query = query.where(sa.tuple_(_S.next_run_at, _S.name) > sa.tuple_(*after))
        query = query.order_by(_S.next_run_at, _S.name).limit(limit)
        async with self._db.read("due schedules") as conn:
            rows = (await conn.execute(query)).all()
        return [_schedule(row._mapping) for row in rows]

    async def fire(
        self,
        name: str,
        *,
        expected: float,
        next_run_at: float,
        last_tick_at: float | None,
        rows: Sequence[InsertRow],
        now: float,
    ) -> tuple[list[str], int] | None:
        """Advance the schedule from ``expected`` to ``next_run_at`` and insert its tick's
        tasks (``rows``), in one transaction; None, with nothing written, when its
        ``next_run_at`` is no longer ``expected`` (another worker fired it)."""
        planned = rows[-1][ROW_ID] if rows else None

        def body(
            txn: Txn, insert: Callable[[Txn], tuple[list[str], int]]
        ) -> tuple[list[str], int] | None:
            advanced = txn.rows(
                _advance,
                name=name,
                expected=expected,
                next_run_at=next_run_at,
                last_tick_at=last_tick_at,
                last_task_id=planned,
                now=now,
            )
            if not advanced:
                return None
            if not rows:
                return [], 0
            ids, inserted = insert(txn)
            if ids[-1] != planned:  # the tick's idempotency key was a live task's
                txn.rows(_last_task, name=name, last_task_id=ids[-1])
            return ids, inserted

        return await self._tasks.insert_within(body, rows, now)


def _values(schedule: Schedule) -> dict[str, Any]:
    timing = schedule.timing
    return {
        "name": schedule.name,
        "cron": timing.cron,
        "interval_s": timing.interval_s,
        "timezone": timing.timezone,
        "kind": schedule.kind,
        "request": schedule.request,
        "options": schedule.options.model_dump(mode="json", exclude_defaults=True),
        "catch_up": schedule.catch_up,
        "max_catch_up": schedule.max_catch_up,
        "next_run_at": schedule.next_run_at,
        "last_tick_at": schedule.last_tick_at,
        "last_task_id": schedule.last_task_id,
        "created_at": schedule.created_at,
        "updated_at": schedule.updated_at,
    }


def _schedule(row: Any) -> Schedule:
    return Schedule.model_construct(
        name=row["name"],
        timing=ScheduleTiming.model_construct(
            cron=row["cron"], interval_s=row["interval_s"], timezone=row["timezone"]
        ),
        kind=row["kind"],
        request=json.loads(row["request"]),
        options=ScheduleTaskOptions.model_validate_json(row["options"]),
        catch_up=row["catch_up"],
        max_catch_up=row["max_catch_up"],
        next_run_at=row["next_run_at"],
        last_tick_at=row["last_tick_at"],
        last_task_id=row["last_task_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )

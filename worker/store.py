"""All SQL: one method per operation, each one transaction.

State changes are compare-and-set statements built from :data:`worker.states.TRANSITIONS`
(``UPDATE ... WHERE id = :id AND state IN (:sources) [AND lease_id = :lease]``), so two
processes racing on one task can never both win. Rows become tasks only in :mod:`worker.rows`.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from worker.db import Database
from worker.errors import (
    DuplicateTaskError,
    InvalidStateTransitionError,
    LeaseLostError,
    TaskNotFoundError,
)
from worker.models import Completion, Failure, Task
from worker.rows import INSERT_COLUMNS, PayloadError, task_from_row
from worker.schema import tasks
from worker.sqlfn import append_error, greatest, set_item_results, state_in
from worker.states import TERMINAL_STATES, TaskState, sources, target

log = logging.getLogger(__name__)

#: Rows per statement when a caller hands over more acknowledgements than that.
_CHUNK = 500
_LIVE = (TaskState.PENDING, TaskState.PROCESSING, TaskState.RETRYABLE)
EXPIRED_ERROR = "visibility timeout expired"
_INSERT_SQL = (
    f"INSERT INTO tasks ({', '.join(INSERT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in INSERT_COLUMNS)})"
)
#: The partial index that holds each state other than completed (statistics count through it).
_STATE_INDEXES = {
    TaskState.PENDING: "ix_tasks_claim",
    TaskState.PROCESSING: "ix_tasks_lease_expiry",
    TaskState.RETRYABLE: "ix_tasks_retryable",
    TaskState.DISCARDED: "ix_tasks_discarded",
    TaskState.CANCELLED: "ix_tasks_cancelled",
}
_ID = INSERT_COLUMNS.index("id")
_KEY = INSERT_COLUMNS.index("idempotency_key")

#: ``(attempt, max_attempts) -> delay before the next attempt`` (policy lives outside SQL).
DelayPolicy = Callable[[int], float]

Ack = Completion | Failure


def _chunks(seq: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


def _match(acks: Sequence[Ack]) -> ColumnElement[bool]:
    """Rows the acknowledgements name: by id, and by lease where one is given (fencing).

    The plain ``id IN (...)`` leads so the planner looks rows up by primary key instead of
    walking every row in the expected state.
    """
    ids = tasks.c.id.in_([a.task_id for a in acks])
    fenced = [(a.task_id, a.lease_id) for a in acks if a.lease_id is not None]
    if not fenced:
        return ids
    unfenced = [a.task_id for a in acks if a.lease_id is None]
    lease_ok: ColumnElement[bool] = sa.tuple_(tasks.c.id, tasks.c.lease_id).in_(fenced)
    if unfenced:
        lease_ok = sa.or_(lease_ok, tasks.c.id.in_(unfenced))
    return sa.and_(ids, lease_ok)


def _per_task(values: dict[str, Any], default: ColumnElement[Any]) -> ColumnElement[Any]:
    """``CASE id WHEN :id THEN :value ... ELSE default END``."""
    if not values:
        return default
    return sa.case(values, value=tasks.c.id, else_=default)


def claim_statement(
    *,
    size: int,
    now: float,
    queues: Sequence[str] | None,
    worker_id: str | None,
    default_visibility_timeout: float,
    lease_prefix: str,
) -> sa.Update:
    """The one claim statement: ``UPDATE ... WHERE id IN (SELECT ... LIMIT n) RETURNING *``.

    The statement is atomic, so the outer UPDATE needs no state check of its own (one would
    lead SQLite to walk every pending row instead of looking the claimed ids up). The inner
    SELECT is pinned to the partial claim index with SQLite's ``INDEXED BY`` (which
    SQLAlchemy cannot express, hence the text): the planner cannot drift to a ``state`` index
    and sort every pending row, and a schema without the index fails loudly.
    """
    queue_filter = "AND queue IN :queues" if queues is not None else ""
    due = sa.text(
        "SELECT id FROM tasks INDEXED BY ix_tasks_claim "
        f"WHERE state = 'pending' AND schedule_at <= :now {queue_filter} "
        "ORDER BY priority DESC, id LIMIT :size"
    ).bindparams(sa.bindparam("now", now), sa.bindparam("size", size))
    if queues is not None:
        due = due.bindparams(sa.bindparam("queues", list(queues), expanding=True))
    return (
        sa.update(tasks)
        .where(tasks.c.id.in_(due.columns(tasks.c.id)))
        .values(
            state=target("claim").value,
            attempt_count=tasks.c.attempt_count + 1,
            lease_id=sa.literal(lease_prefix) + tasks.c.id,
            lease_expires_at=now
            + sa.func.coalesce(tasks.c.visibility_timeout, default_visibility_timeout),
            worker_id=worker_id,
            started_at=now,
            updated_at=now,
        )
        .returning(*tasks.c)
    )


class TaskStore:
    def __init__(self, db: Database, default_visibility_timeout: float) -> None:
        self._db = db
        self._default_vt = default_visibility_timeout

    # -- enqueue -------------------------------------------------------------------------

    async def insert(self, rows: list[tuple[Any, ...]]) -> tuple[list[str], int]:
        """Insert rows (values in :data:`INSERT_COLUMNS` order) atomically.

        Returns each row's task id and how many rows were inserted: a row whose idempotency
        key belongs to a live task (or to an earlier row of the same batch) is not inserted,
        and its id is the existing task's. The rows go to the driver as they are (one
        ``executemany``): the hot path of bulk enqueue skips per-row parameter processing.
        """
        async with self._db.write("enqueue") as conn:
            ids = [row[_ID] for row in rows]
            existing = await self._live_keys(conn, rows)
            fresh: list[tuple[Any, ...]] = []
            for index, row in enumerate(rows):
                key = row[_KEY]
                if key is not None and key in existing:
                    ids[index] = existing[key]
                    continue
                if key is not None:
                    existing[key] = row[_ID]
                fresh.append(row)
            try:
                await conn.exec_driver_sql(_INSERT_SQL, fresh)
            except exc.IntegrityError as error:
                taken = await self._existing_ids(conn, [row[_ID] for row in fresh])
                raise DuplicateTaskError(taken or [str(error.orig)]) from error
        return ids, len(fresh)

    async def _live_keys(
        self, conn: AsyncConnection, rows: list[tuple[Any, ...]]
    ) -> dict[str, str]:
        keys = {row[_KEY] for row in rows if row[_KEY] is not None}
        if not keys:
            return {}
        query = sa.select(tasks.c.idempotency_key, tasks.c.id).where(
            tasks.c.idempotency_key.in_(keys), state_in(*_LIVE)
        )
        return {str(key): str(task_id) for key, task_id in (await conn.execute(query)).all()}

    async def _existing_ids(self, conn: AsyncConnection, ids: list[str]) -> list[str]:
        found: list[str] = []
        for chunk in _chunks(ids):
            query = sa.select(tasks.c.id).where(tasks.c.id.in_(chunk))
            found += (await conn.execute(query)).scalars().all()
        return found

    # -- claim ---------------------------------------------------------------------------

    async def claim(
        self, size: int, now: float, queues: Sequence[str] | None, worker_id: str | None
    ) -> list[Task]:
        """Claim up to ``size`` due pending tasks, highest priority first, then oldest."""
        prefix = secrets.token_hex(8) + ":"
        claim = claim_statement(
            size=size,
            now=now,
            queues=queues,
            worker_id=worker_id,
            default_visibility_timeout=self._default_vt,
            lease_prefix=prefix,
        )
        claimed: list[Task] = []
        async with self._db.write("dequeue") as conn:
            rows = (await conn.execute(claim)).mappings().all()
            for row in rows:
                try:
                    claimed.append(task_from_row(row))
                except PayloadError as error:
                    await self._discard_unloadable(conn, row["id"], str(error), now)
        claimed.sort(key=lambda t: (-t.priority, t.id))
        return claimed

    async def _discard_unloadable(
        self, conn: AsyncConnection, task_id: str, reason: str, now: float
    ) -> None:
        message = f"system: cannot load task: {reason}"
        log.error("discarding task %s: %s", task_id, message)
        await conn.execute(
            sa.update(tasks)
            .where(tasks.c.id == task_id, state_in(TaskState.PROCESSING))
            .values(
                state=TaskState.DISCARDED.value,
                last_error=message,
                errors=append_error(sa.literal(message), now, expired=False),
                lease_expires_at=None,
                finished_at=now,
                updated_at=now,
            )
        )

    # -- acknowledgements ----------------------------------------------------------------

    async def complete(self, acks: Sequence[Completion], now: float, *, strict: bool) -> list[str]:
        """PROCESSING -> COMPLETED; returns the ids refused (stale lease or wrong state)."""
        results = {a.task_id: set_item_results(a.results) for a in acks if a.results}
        values: dict[str, Any] = {
            "state": target("complete").value,
            "finished_at": now,
            "updated_at": now,
            "lease_expires_at": None,
            "retry_delay": None,
        }
        if results:
            values["task_items"] = _per_task(results, tasks.c.task_items)
        return await self._finish("complete", acks, values, strict=strict)

    async def fail(
        self, operation: str, acks: Sequence[Failure], now: float, *, strict: bool
    ) -> list[str]:
        """PROCESSING -> RETRYABLE (``retry``) or DISCARDED (``discard``), error recorded."""
        error = _per_task({a.task_id: a.error for a in acks}, tasks.c.last_error)
        values: dict[str, Any] = {
            "state": target(operation).value,
            "last_error": error,
            "errors": append_error(error, now, expired=False),
            "lease_expires_at": None,
            "updated_at": now,
        }
        if operation == "retry":
            delays = {a.task_id: a.delay_s for a in acks if a.delay_s is not None}
            values["retry_delay"] = _per_task(delays, sa.null())
        else:
            values["finished_at"] = now
        return await self._finish(operation, acks, values, strict=strict)

    async def _finish(
        self, operation: str, acks: Sequence[Ack], values: dict[str, Any], *, strict: bool
    ) -> list[str]:
        refused: list[str] = []
        async with self._db.write(operation) as conn:
            for chunk in _chunks(acks):
                statement = (
                    sa.update(tasks)
                    .where(state_in(*sources(operation)), _match(chunk))
                    .values(values)
                    .returning(tasks.c.id)
                )
                done = set((await conn.execute(statement)).scalars().all())
                missed = [a for a in chunk if a.task_id not in done]
                if missed and strict:
                    await self._raise_refusal(
                        conn, operation, missed[0].task_id, missed[0].lease_id
                    )
                refused += [a.task_id for a in missed]
        return refused

    async def transition(
        self,
        operation: str,
        task_id: str,
        values: dict[str, Any],
        *,
        lease_id: str | None = None,
    ) -> None:
        """One compare-and-set from ``sources(operation)`` to ``target(operation)``."""
        values = {"state": target(operation).value, **values}
        condition = tasks.c.id == task_id
        if lease_id is not None:
            condition = sa.and_(condition, tasks.c.lease_id == lease_id)
        statement = (
            sa.update(tasks)
            .where(condition, state_in(*sources(operation)))
            .values(values)
            .returning(tasks.c.id)
        )
        async with self._db.write(operation) as conn:
            if (await conn.execute(statement)).first() is None:
                await self._raise_refusal(conn, operation, task_id, lease_id)

    async def resume(self, task_id: str, now: float, default_max_attempts: int) -> None:
        """DISCARDED -> PENDING, due now, with at least one attempt left."""
        more = greatest(
            sa.func.coalesce(tasks.c.max_attempts, default_max_attempts),
            tasks.c.attempt_count + 1,
        )
        await self.transition(
            "resume",
            task_id,
            {
                "schedule_at": now,
                "max_attempts": more,
                "finished_at": None,
                "lease_expires_at": None,
                "retry_delay": None,
                "updated_at": now,
            },
        )

    async def extend_lease(
        self, task_id: str, lease_id: str, now: float, seconds: float | None
    ) -> float:
        """Renew a lease; returns its new expiry."""
        length: Any = (
            seconds
            if seconds is not None
            else sa.func.coalesce(tasks.c.visibility_timeout, self._default_vt)
        )
        statement = (
            sa.update(tasks)
            .where(
                tasks.c.id == task_id, tasks.c.lease_id == lease_id, state_in(TaskState.PROCESSING)
            )
            .values(lease_expires_at=now + length, updated_at=now)
            .returning(tasks.c.lease_expires_at)
        )
        async with self._db.write("extend_lease") as conn:
            expires = (await conn.execute(statement)).scalar()
            if expires is None:
                await self._raise_refusal(conn, "extend_lease", task_id, lease_id)
        return float(expires)

    async def _raise_refusal(
        self, conn: AsyncConnection, operation: str, task_id: str, lease_id: str | None
    ) -> None:
        query = sa.select(tasks.c.state, tasks.c.lease_id).where(tasks.c.id == task_id)
        row = (await conn.execute(query)).first()
        if row is None:
            raise TaskNotFoundError(task_id)
        state, current_lease = row
        if lease_id is not None and current_lease != lease_id:
            raise LeaseLostError(task_id, operation, state, lease_id)
        expected = tuple(s.value for s in sources(operation))
        raise InvalidStateTransitionError(task_id, operation, state, expected)

    # -- the sweep -----------------------------------------------------------------------

    async def sweep(
        self,
        size: int,
        now: float,
        *,
        visibility_timeout: float | None,
        max_attempts: int,
        delay: DelayPolicy,
    ) -> list[Task]:
        """Expired leases -> RETRYABLE; RETRYABLE -> PENDING (after backoff) or DISCARDED.

        One write transaction: on SQLite it holds the write lock from its first statement,
        so nothing it decides on can change under it.
        """
        async with self._db.write("retry sweep") as conn:
            expired = await self._expire_leases(conn, size, now, visibility_timeout)
            moved = await self._requeue_or_exhaust(conn, size, now, max_attempts, delay)
            ids = list(dict.fromkeys([*expired, *moved]))
            rows: list[Any] = []
            for chunk in _chunks(ids):
                query = sa.select(tasks).where(tasks.c.id.in_(chunk))
                rows += (await conn.execute(query)).mappings().all()
        return sorted((task_from_row(row, lenient=True) for row in rows), key=lambda t: t.id)

    async def _expire_leases(
        self, conn: AsyncConnection, size: int, now: float, visibility_timeout: float | None
    ) -> list[str]:
        if visibility_timeout is None:
            stale = tasks.c.lease_expires_at <= now
        else:  # the caller's timeout, counted from the last claim or renewal
            stale = tasks.c.updated_at <= now - visibility_timeout
        victims = sa.select(tasks.c.id).where(state_in(TaskState.PROCESSING), stale).limit(size)
        statement = (
            sa.update(tasks)
            .where(tasks.c.id.in_(victims.scalar_subquery()), state_in(*sources("expire")))
            .values(
                state=target("expire").value,
                last_error=EXPIRED_ERROR,
                errors=append_error(sa.literal(EXPIRED_ERROR), now, expired=True),
                expired_count=tasks.c.expired_count + 1,
                lease_id=None,
                lease_expires_at=None,
                retry_delay=None,
                updated_at=now,
            )
            .returning(tasks.c.id)
        )
        return list((await conn.execute(statement)).scalars().all())

    async def _requeue_or_exhaust(
        self, conn: AsyncConnection, size: int, now: float, max_attempts: int, delay: DelayPolicy
    ) -> list[str]:
        query = (
            sa.select(tasks.c.id, tasks.c.attempt_count, tasks.c.max_attempts, tasks.c.retry_delay)
            .where(state_in(TaskState.RETRYABLE))
            .order_by(tasks.c.updated_at)
            .limit(size)
        )
        requeue: list[dict[str, Any]] = []
        exhaust: list[dict[str, Any]] = []
        for task_id, attempts, own_max, retry_delay in (await conn.execute(query)).all():
            if attempts >= (own_max if own_max is not None else max_attempts):
                exhaust.append({"b_id": task_id})
            else:
                wait = retry_delay if retry_delay is not None else delay(max(attempts, 1))
                requeue.append({"b_id": task_id, "b_schedule_at": now + wait})
        if requeue:
            await conn.execute(
                sa.update(tasks)
                .where(tasks.c.id == sa.bindparam("b_id"), state_in(*sources("requeue")))
                .values(
                    state=target("requeue").value,
                    schedule_at=sa.bindparam("b_schedule_at"),
                    retry_delay=None,
                    updated_at=now,
                ),
                requeue,
            )
        if exhaust:
            await conn.execute(
                sa.update(tasks)
                .where(tasks.c.id == sa.bindparam("b_id"), state_in(*sources("exhaust")))
                .values(state=target("exhaust").value, finished_at=now, updated_at=now),
                exhaust,
            )
        return [row["b_id"] for row in requeue + exhaust]

    # -- reads and retention -------------------------------------------------------------

    async def get(self, task_id: str) -> Task:
        async with self._db.read("get_task") as conn:
            row = (
                (await conn.execute(sa.select(tasks).where(tasks.c.id == task_id)))
                .mappings()
                .first()
            )
        if row is None:
            raise TaskNotFoundError(task_id)
        return task_from_row(row, lenient=True)

    async def list(
        self,
        *,
        state: TaskState | None,
        queue: str | None,
        limit: int,
        after_id: str | None,
    ) -> list[Task]:
        query = sa.select(tasks).order_by(tasks.c.id).limit(limit)
        if state is not None:
            query = query.where(state_in(state))
        if queue is not None:
            query = query.where(tasks.c.queue == queue)
        if after_id is not None:
            query = query.where(tasks.c.id > after_id)
        async with self._db.read("list_tasks") as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [task_from_row(row, lenient=True) for row in rows]

    async def count_by_state(self, queue: str | None) -> dict[str, int]:
        """Tasks per state, at a cost that follows the live tasks, not the history.

        Completed tasks (usually almost every row) are not counted one by one: the total
        comes from ``count(*)`` (for the whole table SQLite answers it from b-tree page
        counts; for one queue it walks the queue index), every other state from its partial
        index, and completed is the difference.
        """
        filters = "" if queue is None else " AND queue = :queue"
        counts = ", ".join(
            f"(SELECT count(*) FROM tasks INDEXED BY {index} WHERE state = '{state.value}'"
            f"{filters})"
            for state, index in _STATE_INDEXES.items()
        )
        total = (
            "(SELECT count(*) FROM tasks)"
            if queue is None
            else ("(SELECT count(*) FROM tasks WHERE queue = :queue)")
        )
        query = sa.text(f"SELECT {total}, {counts}")
        if queue is not None:
            query = query.bindparams(queue=queue)
        async with self._db.read("get_queue_stats") as conn:
            everything, *numbers = (await conn.execute(query)).one()
        stats = {s.value: int(n) for s, n in zip(_STATE_INDEXES, numbers, strict=True)}
        stats[TaskState.COMPLETED.value] = int(everything) - sum(stats.values())
        return stats

    async def purge(self, cutoff: float, states: Iterable[TaskState]) -> int:
        chosen = tuple(states)
        statement = sa.delete(tasks).where(state_in(*chosen), tasks.c.finished_at <= cutoff)
        async with self._db.write("purge") as conn:
            result = await conn.execute(statement)
        return int(result.rowcount)


__all__ = ["EXPIRED_ERROR", "TERMINAL_STATES", "TaskStore"]

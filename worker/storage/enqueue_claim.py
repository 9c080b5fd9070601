"""Enqueue and claim, in SQL: each one transaction, in one trip to the driver
(:mod:`worker.storage.txn`).

The hot path runs statements compiled once in :mod:`worker.storage.statements`; rows become
tasks only in :mod:`worker.storage.rows`. Acknowledgements and other transitions are
:mod:`worker.storage.transitions`.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.core import observers
from worker.core.errors import (
    DuplicateTaskError,
    QueueFullError,
    StorageError,
    UnknownRequestKindError,
)
from worker.core.models import Failure, Resources, Task
from worker.core.states import TaskState
from worker.storage import dependencies, undecodable
from worker.storage.database import Database
from worker.storage.payload import PayloadError
from worker.storage.row_decode import UNREADABLE, task_from_claim, task_from_values, unreadable
from worker.storage.rows import (
    FULL_WIDTH,
    PLAIN_WIDTH,
    RAW_COLUMNS,
    ROW_COLUMNS,
    ROW_DEPENDS_ON,
    ROW_ID,
    ROW_KEY,
    ROW_QUEUE,
    InsertRow,
    UniformRows,
)
from worker.storage.schema import tasks
from worker.storage.sql import greatest, json_values, state_in, under_leases
from worker.storage.statements import CLAIM_COLUMNS, Prepared, Statements
from worker.storage.transitions import TransitionStore
from worker.storage.txn import Txn

log = logging.getLogger(__name__)

_LIVE = (TaskState.PENDING, TaskState.PROCESSING, TaskState.RETRYABLE)

_UNLIMITED = 2**62

T = TypeVar("T")


def _within(claimed: list[Task], budget: Resources) -> tuple[list[Task], list[Task]]:
    """Split claimed tasks into those that fit the budget together, in order, and the rest."""
    memory, cpu = budget.memory_bytes, budget.cpu
    kept: list[Task] = []
    extra: list[Task] = []
    for task in claimed:
        needs = task.resources
        if needs.memory_bytes <= memory and needs.cpu <= cpu:
            memory -= needs.memory_bytes
            cpu -= needs.cpu
            kept.append(task)
        else:
            extra.append(task)
    return kept, extra


class TaskStore:
    def __init__(
        self, db: Database, default_visibility_timeout: float, transitions: TransitionStore
    ) -> None:
        self._db = db
        self._default_vt = default_visibility_timeout
        self._transitions = transitions
        self._maybe_empty = False

    @property
    def _sql(self) -> Statements:
        return self._db.statements

    async def _run(self, conn: AsyncConnection, statement: Prepared, **values: Any) -> list[Any]:
        """Execute a prepared statement; returns its rows (raw tuples)."""
        result = await conn.exec_driver_sql(statement.sql, statement.params(**values))
        return list(result.all()) if result.returns_rows else []

    # -- enqueue -------------------------------------------------------------------------

    async def insert(
        self,
        rows: Sequence[InsertRow],
        now: float,
        *,
        max_pending: int = 0,
        meanwhile: Callable[[], bool] | None = None,
    ) -> tuple[list[str], int]:
        """Insert rows (:data:`INSERT_COLUMNS` values) atomically, by the backend's bulk load
        (multi-row inserts on SQLite, a binary COPY on PostgreSQL) or an ``executemany``.

        Returns each row's task id and how many rows were inserted: a row whose idempotency
        key belongs to a live task (or to an earlier row of the same batch) is not inserted,
        and its id is the existing task's. Dependencies are recorded in the same transaction.
        With ``max_pending``, a batch that would take a queue past that many pending tasks
        raises :class:`QueueFullError` and writes nothing (the queues are locked first where
        producers would otherwise count side by side). ``meanwhile`` as for
        :meth:`~worker.storage.database.Database.transaction`.
        """
        reads_first = _reads_first(rows) or bool(max_pending)
        # A batch without keys, dependencies or a bound is one bulk load (one statement,
        # atomic by itself) and a wake-up: no transaction around them is needed.
        standalone = not reads_first and self._sql.bulk_load is not None
        return await self._inserting(
            self._insert_body(rows, now, max_pending),
            rows,
            lock_first=reads_first,
            atomic=not standalone,
            meanwhile=meanwhile,
        )

    async def insert_within(
        self,
        body: Callable[[Txn, Callable[[Txn], tuple[list[str], int]]], T],
        rows: Sequence[InsertRow],
        now: float,
    ) -> T:
        """Run ``body(txn, insert)`` as one transaction, where ``insert(txn)`` inserts the rows
        as :meth:`insert` does: for a caller whose own statements must commit (or not) with
        them. ``body``'s first statement must write (it opens the transaction)."""
        insert = self._insert_body(rows, now)
        return await self._inserting(
            lambda txn: body(txn, insert), rows, lock_first=False, atomic=True
        )

    def _insert_body(
        self, rows: Sequence[InsertRow], now: float, max_pending: int = 0
    ) -> Callable[[Txn], tuple[list[str], int]]:
        wake, key_locks = self._sql.wake_tasks, self._sql.key_locks
        # A batch in which no task names a callback goes without those columns.
        alike = rows.template if isinstance(rows, UniformRows) else None
        if alike is not None:  # one row tells: its template's
            plain = len(alike) == PLAIN_WIDTH
        else:
            plain = all(len(row) == PLAIN_WIDTH for row in rows)
        if plain:
            insert = self._sql.insert_plain
        else:
            insert = self._sql.insert
            if alike is None:
                rows = [row if len(row) == FULL_WIDTH else (*row, None, None) for row in rows]
        if alike is not None:
            keyed, depends = alike[ROW_KEY] is not None, bool(alike[ROW_DEPENDS_ON])
        else:
            keyed = any(row[ROW_KEY] is not None for row in rows)
            depends = any(row[ROW_DEPENDS_ON] for row in rows)
        reads_first = keyed or bool(max_pending) or depends

        def body(txn: Txn) -> tuple[list[str], int]:
            ids = list(rows.ids) if isinstance(rows, UniformRows) else [row[ROW_ID] for row in rows]
            if max_pending:  # queue locks come before key locks, in every transaction
                queues = Counter(row[ROW_QUEUE] for row in rows)
                if self._sql.queue_locks is not None:
                    txn.rows(self._sql.queue_locks, queues=json.dumps(sorted(queues)))
            # Without idempotency keys (the common bulk enqueue) every row is new.
            fresh = _fresh(rows, ids, _live_keys(txn, rows, key_locks)) if keyed else rows
            if max_pending:
                adding = Counter(row[ROW_QUEUE] for row in fresh) if keyed else queues
                _check_room(txn, self._sql.pending_by_queue, adding, max_pending)
            try:
                if fresh and not txn.load(fresh):  # the backend's bulk load, if any
                    txn.many(insert, fresh)
            except exc.IntegrityError as error:
                # Which ids were taken is asked after the rollback (PostgreSQL refuses any
                # statement in a transaction that failed): no savepoint on the hot path.
                raise _Collided([row[ROW_ID] for row in fresh], error) from error
            if reads_first:
                dependencies.link(txn, fresh, now)
            if wake is not None and fresh:  # once per transaction, delivered at commit
                txn.rows(wake)
            return ids, len(fresh)

        return body

    async def _inserting(
        self,
        body: Callable[[Txn], T],
        rows: Sequence[InsertRow],
        *,
        lock_first: bool,
        atomic: bool,
        meanwhile: Callable[[], bool] | None = None,
    ) -> T:
        try:
            return await self._db.transaction(
                "enqueue",
                body,
                lock_first=lock_first,
                rows=len(rows),
                atomic=atomic,
                meanwhile=meanwhile,
            )
        except _Collided as collided:
            async with self._db.read("enqueue") as conn:
                stored = await self._run(
                    conn, self._sql.of(_ids_taken), ids=json.dumps(collided.ids)
                )
            taken = {str(row[0]) for row in stored} | _repeated(collided.ids)
            detail = str(collided.error.orig)
            raise DuplicateTaskError(sorted(taken) or [detail]) from collided.error

    # -- claim ---------------------------------------------------------------------------

    async def claim(
        self,
        size: int,
        now: float,
        queues: Sequence[str] | None,
        worker_id: str | None,
        budget: Resources | None = None,
    ) -> list[Task]:
        """Claim up to ``size`` due pending tasks, highest priority first, then oldest.

        With a ``budget``, only tasks that each fit are claimed, and of those only as many as
        fit together (in claim order); the rest are given back at once, attempt unused.
        """
        values: dict[str, Any] = {
            "now": now,
            "size": size,
            "lease_prefix": secrets.token_hex(8) + ":",
            "default_vt": self._default_vt,
            "worker_id": worker_id,
            "memory": _UNLIMITED if budget is None else budget.memory_bytes,
            "cpu": float(_UNLIMITED) if budget is None else budget.cpu,
            "gpu": budget is None or budget.gpu,
        }
        statement = self._sql.claim
        if queues is not None:
            statement = self._sql.claim_by_queue
            values["queues"] = json.dumps(list(queues))
        # After a short claim the queue is probably empty: on a backend with one writer, ask
        # with a read first, so that idle pollers leave the write lock to producers. With
        # row locks (PostgreSQL) the read would only add a round trip.
        single_writer = self._db.backend.capabilities.single_writer
        if self._maybe_empty and single_writer and not await self._any_due(values):
            return []

        prefix = values["lease_prefix"]

        def body(txn: Txn) -> tuple[list[tuple[Any, ...]], dict[str, tuple[Any, ...]]]:
            rows = txn.rows(statement, **values)
            # Tasks that are not plain (see CLAIM_DEFAULTS) are read back whole, under this
            # claim's leases (see _claimed_rows).
            if unusual := [row[0] for row in rows if not row[-1]]:
                found = txn.rows(_claimed_rows, ids=json.dumps(unusual), lease_prefix=prefix)
                return rows, {row[0]: row for row in found}
            return rows, {}

        tolerant = False
        try:
            # The claim is one statement (atomic by itself); the read of unusual rows after it
            # reads rows this claim now holds: neither needs a transaction around both.
            rows, whole = await self._db.transaction("dequeue", body, rows=size, atomic=False)
        except StorageError as error:
            if not undecodable.is_undecodable(error):
                raise
            # A claimed row's text is not UTF-8: claim again, reading it tolerantly, and
            # discard it below. Only a batch that meets such a row pays for this.
            rows, whole = await self._claim_tolerantly(statement, values)
            tolerant = True
        # Rows become tasks after the commit: the write lock is held for the SQL only.
        self._maybe_empty = len(rows) < size
        claimed: list[Task] = []
        unloadable: list[Failure] = []
        vt = self._default_vt
        for row in rows:
            if not row[-1] and not _still_held(whole.get(row[0]), prefix + row[0]):
                # Taken from this claim before its rows were read back (PostgreSQL runs the
                # two statements apart: a worker paused between them was presumed dead).
                log.warning("task %s: claim dropped: its lease was lost before it started", row[0])
                continue
            try:
                if tolerant:
                    _decodable(row, whole.get(row[0]))
                claimed.append(
                    task_from_claim(
                        row, now=now, lease_prefix=prefix, worker_id=worker_id, default_vt=vt
                    )
                    if row[-1]
                    else task_from_values(whole[row[0]])
                )
            except UNREADABLE as error:
                message = _unloadable_message(error)
                log.error("discarding task %s: %s", row[0], message)
                unloadable.append(Failure(row[0], message, lease_id=prefix + row[0]))
        if unloadable:
            await self._transitions.fail("discard", unloadable, now, strict=False)
            for failure in unloadable:  # a worker counts them among its discards
                observers.unloadable(failure.task_id, worker_id)
        claimed.sort(key=lambda t: (-t.priority, t.id))
        if budget is not None:
            claimed, extra = _within(claimed, budget)
            if extra:
                await self.release([(t.id, t.lease_id or "") for t in extra], now)
        return claimed

    async def _claim_tolerantly(
        self, statement: Prepared, values: dict[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        """The claim of :meth:`claim` on a connection that reads text that is not UTF-8 as
        :class:`~worker.storage.undecodable.Garbled` (off the hot path: SQLAlchemy's connection)."""
        async with (
            self._db.write("dequeue", lock_first=False) as conn,
            undecodable.tolerant(conn),
        ):
            rows = await self._run(conn, statement, **values)
            unusual = [row[0] for row in rows if not row[-1]]
            found = []
            if unusual:
                whole = self._sql.of(_claimed_rows)
                found = await self._run(
                    conn, whole, ids=json.dumps(unusual), lease_prefix=values["lease_prefix"]
                )
        return rows, {row[0]: row for row in found}

    async def release(self, leases: Sequence[tuple[str, str]], now: float) -> list[str]:
        """PROCESSING -> PENDING, due now, giving the attempt back; returns the ids released."""
        if not leases:
            return []
        statement = (
            sa.update(tasks)
            .where(under_leases("leases"))
            .values(
                state=TaskState.PENDING.value,
                attempt_count=greatest(tasks.c.attempt_count - 1, 0),
                schedule_at=now,
                lease_expires_at=None,
                progress=sa.null(),
                updated_at=now,
            )
            .returning(tasks.c.id)
        )
        async with self._db.write("release", lock_first=False) as conn:
            rows = (await conn.execute(statement, {"leases": json.dumps(list(leases))})).all()
        return [str(row[0]) for row in rows]

    async def any_due(
        self, now: float, queues: Sequence[str] | None, budget: Resources | None = None
    ) -> bool:
        """Whether a claim now would find something that fits (a read: no write lock)."""
        values: dict[str, Any] = {
            "now": now,
            "memory": _UNLIMITED if budget is None else budget.memory_bytes,
            "cpu": float(_UNLIMITED) if budget is None else budget.cpu,
            "gpu": budget is None or budget.gpu,
        }
        if queues is not None:
            values["queues"] = json.dumps(list(queues))
        return await self._any_due(values)

    async def _any_due(self, values: dict[str, Any]) -> bool:
        """A read (no write lock) that says whether a claim could find anything.

        After a claim came back short the queue is probably empty; checking with a read
        first keeps idle pollers from taking the write lock away from producers.
        """
        statement = self._sql.any_due_by_queue if "queues" in values else self._sql.any_due
        async with self._db.read("dequeue") as conn:
            return bool(await self._run(conn, statement, **values))


_LEASE_AT = ROW_COLUMNS.index("lease_id")


def _still_held(whole: Sequence[Any] | None, lease_id: str) -> bool:
    """Whether a claimed row read back whole still holds this claim's lease (the read asks
    for it already; this keeps a row read any other way from running under a lost lease)."""
    return whole is not None and whole[_LEASE_AT] == lease_id


def _reads_first(rows: Sequence[InsertRow]) -> bool:
    """Whether an insert reads before it writes (idempotency keys, dependencies)."""
    if isinstance(rows, UniformRows):
        row = rows.template
        return row[ROW_KEY] is not None or bool(row[ROW_DEPENDS_ON])
    return any(row[ROW_KEY] is not None or row[ROW_DEPENDS_ON] for row in rows)


def _decodable(row: Sequence[Any], whole: Sequence[Any] | None) -> None:
    """Raise :class:`PayloadError` for a claimed row with text that was not UTF-8."""
    garbled = undecodable.garbled_columns(row, (*CLAIM_COLUMNS, "plain"))
    if whole is not None:
        garbled += undecodable.garbled_columns(whole, ROW_COLUMNS)
    if garbled:
        columns = ", ".join(sorted(set(garbled)))
        raise PayloadError(f"stored text is not UTF-8 (column {columns})")


class _Collided(Exception):
    """A bulk insert met an id already stored (the transaction is rolled back)."""

    def __init__(self, ids: list[str], error: exc.IntegrityError) -> None:
        super().__init__(str(error))
        self.ids = ids
        self.error = error


def _repeated(ids: list[str]) -> set[str]:
    """Ids that occur more than once in ``ids`` (a batch that collides with itself)."""
    return {task_id for task_id, times in Counter(ids).items() if times > 1}


def _fresh(rows: Sequence[InsertRow], ids: list[str], existing: dict[str, str]) -> list[InsertRow]:
    """The rows to insert: not those whose idempotency key a live task (``existing``) or an
    earlier row holds; their ``ids`` entries become the holder's id."""
    fresh: list[InsertRow] = []
    for index, row in enumerate(rows):
        key = row[ROW_KEY]
        if key is not None and key in existing:
            ids[index] = existing[key]
            continue
        if key is not None:
            existing[key] = row[ROW_ID]
        fresh.append(row)
    return fresh


def _check_room(txn: Txn, count: Prepared, adding: Counter[str], limit: int) -> None:
    """Raise :class:`QueueFullError` when adding these tasks to their queues would take one
    past ``limit`` pending tasks."""
    if not adding:
        return
    found = dict(txn.rows(count, queues=json.dumps(sorted(adding))))
    for queue in sorted(adding):
        pending = int(found.get(queue, 0))
        if pending + adding[queue] > limit:
            raise QueueFullError(queue, pending, adding[queue], limit)


def _live_keys(
    txn: Txn, rows: Sequence[InsertRow], locks: Prepared | None = None
) -> dict[str, str]:
    """Live tasks' ids by idempotency key, for the keys these rows carry; with ``locks``
    (the backend's key locks) each key is locked first, until the transaction ends."""
    keys = {row[ROW_KEY] for row in rows if row[ROW_KEY] is not None}
    if not keys:
        return {}
    if locks is not None:
        txn.rows(locks, keys=json.dumps(sorted(keys)))
    found = txn.rows(_keys_taken, keys=json.dumps(sorted(keys)))
    return {str(key): str(task_id) for key, task_id in found}


def _keys_taken() -> sa.Select[Any]:
    return sa.select(tasks.c.idempotency_key, tasks.c.id).where(
        tasks.c.idempotency_key.in_(json_values("keys")),
        state_in(*_LIVE),
    )


def _claimed_rows() -> sa.Select[Any]:
    """Whole rows (:data:`RAW_COLUMNS`) of the tasks in ``:ids``, a JSON list, that still
    hold the leases of the claim whose prefix is ``:lease_prefix``.

    The lease matters where the claim and this read are two statements, not one transaction
    (PostgreSQL's claim commits on its own): a row taken from the claim in between is not
    read back as this worker's, with another claim's lease and attempt.
    """
    lease = sa.bindparam("lease_prefix", type_=sa.String) + tasks.c.id
    return sa.select(*RAW_COLUMNS).where(
        tasks.c.id.in_(json_values("ids")), tasks.c.lease_id == lease
    )


def _ids_taken() -> sa.Select[Any]:
    return sa.select(tasks.c.id).where(tasks.c.id.in_(json_values("ids")))


def _unloadable_message(error: BaseException) -> str:
    """The error a task that a claim cannot load is discarded with."""
    message = f"system: cannot load task: {unreadable(error)}"
    if isinstance(error.__cause__, UnknownRequestKindError):
        message += (
            "; this worker does not know the kind: start it with the module that registers it"
            " (wq worker -m MODULE), then resume the task"
        )
    return message

"""All SQL: one method per operation, each one transaction.

State changes are compare-and-set statements built from :data:`worker.states.TRANSITIONS`
(``UPDATE ... WHERE id = :id AND state IN (:sources) [AND lease_id = :lease]``), so two
processes racing on one task can never both win. The hot path (insert, claim, acknowledge)
runs statements compiled once in :mod:`worker.statements`; rows become tasks only in
:mod:`worker.rows`.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncConnection

from worker import dependencies
from worker.db import Database
from worker.errors import (
    DuplicateTaskError,
    InvalidInputError,
    InvalidStateTransitionError,
    LeaseLostError,
    QueueError,
    TaskNotFoundError,
)
from worker.models import Completion, Failure, Resources, Task
from worker.payload import PayloadError
from worker.rows import InsertRow, outcomes_json, task_from_claim
from worker.schema import tasks
from worker.sqlfn import greatest, lease_pairs, state_in
from worker.statements import Prepared, Statements
from worker.states import TaskState, sources, target
from worker.txn import Txn

log = logging.getLogger(__name__)

#: Acknowledgements per statement when a caller hands over more than that.
_CHUNK = 1000
_LIVE = (TaskState.PENDING, TaskState.PROCESSING, TaskState.RETRYABLE)


def _chunks(seq: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


_UNLIMITED = 2**62


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


def _completion_json(acks: Sequence[Completion]) -> str:
    return json.dumps(
        [
            [
                a.task_id,
                a.lease_id,
                None if a.results is None else _results_json(a),
                None if a.progress is None else a.progress.model_dump_json(),
            ]
            for a in acks
        ],
        separators=(",", ":"),
    )


def _results_json(ack: Completion) -> str:
    try:
        return outcomes_json(ack.results or [])
    except ValueError as exc:
        raise InvalidInputError(f"task {ack.task_id}: {exc}") from exc


def _failure_json(acks: Sequence[Failure]) -> str:
    return json.dumps(
        [[a.task_id, a.lease_id, a.error, a.delay_s, None] for a in acks],
        separators=(",", ":"),
    )


class TaskStore:
    def __init__(self, db: Database, default_visibility_timeout: float) -> None:
        self._db = db
        self._default_vt = default_visibility_timeout
        self._maybe_empty = False

    @property
    def _sql(self) -> Statements:
        return self._db.statements

    async def _run(self, conn: AsyncConnection, statement: Prepared, **values: Any) -> list[Any]:
        """Execute a prepared statement; returns its rows (raw tuples)."""
        result = await conn.exec_driver_sql(statement.sql, statement.params(**values))
        return list(result.all()) if result.returns_rows else []

    # -- enqueue -------------------------------------------------------------------------

    async def insert(self, rows: list[InsertRow], now: float) -> tuple[list[str], int]:
        """Insert rows (:data:`INSERT_COLUMNS` values) atomically, in one ``executemany``.

        Returns each row's task id and how many rows were inserted: a row whose idempotency
        key belongs to a live task (or to an earlier row of the same batch) is not inserted,
        and its id is the existing task's. Dependencies are recorded in the same transaction.
        """
        insert = self._sql.insert
        reads_first = any(row.idempotency_key or row.depends_on for row in rows)

        def body(txn: Txn) -> tuple[list[str], int]:
            ids = [row.id for row in rows]
            existing = _live_keys(txn, rows)
            fresh: list[InsertRow] = []
            for index, row in enumerate(rows):
                key = row.idempotency_key
                if key is not None and key in existing:
                    ids[index] = existing[key]
                    continue
                if key is not None:
                    existing[key] = row.id
                fresh.append(row)
            try:
                txn.many(insert, fresh)
            except exc.IntegrityError as error:
                fresh_ids = json.dumps([row.id for row in fresh])
                taken = [str(row[0]) for row in txn.rows(_ids_taken, ids=fresh_ids)]
                raise DuplicateTaskError(taken or [str(error.orig)]) from error
            if reads_first:
                dependencies.link(txn, fresh, now)
            return ids, len(fresh)

        return await self._db.transaction("enqueue", body, lock_first=reads_first)

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
            "gpu": 1 if budget is None or budget.gpu else 0,
        }
        statement = self._sql.claim
        if queues is not None:
            statement = self._sql.claim_by_queue
            values["queues"] = json.dumps(list(queues))
        if self._maybe_empty and not await self._any_due(values):
            return []
        rows = await self._db.transaction("dequeue", lambda txn: txn.rows(statement, **values))
        # Rows become tasks after the commit: the write lock is held for the SQL only.
        self._maybe_empty = len(rows) < size
        claimed: list[Task] = []
        unloadable: list[Failure] = []
        prefix, vt = values["lease_prefix"], self._default_vt
        for row in rows:
            try:
                claimed.append(
                    task_from_claim(
                        row, now=now, lease_prefix=prefix, worker_id=worker_id, default_vt=vt
                    )
                )
            except PayloadError as error:
                message = f"system: cannot load task: {error}"
                log.error("discarding task %s: %s", row[0], message)
                unloadable.append(Failure(row[0], message, lease_id=prefix + row[0]))
        if unloadable:
            await self.fail("discard", unloadable, now, strict=False)
        claimed.sort(key=lambda t: (-t.priority, t.id))
        if budget is not None:
            claimed, extra = _within(claimed, budget)
            if extra:
                await self.release([(t.id, t.lease_id or "") for t in extra], now)
        return claimed

    async def release(self, leases: Sequence[tuple[str, str]], now: float) -> list[str]:
        """PROCESSING -> PENDING, due now, giving the attempt back; returns the ids released."""
        if not leases:
            return []
        claims = lease_pairs("leases")
        statement = (
            sa.update(tasks)
            .where(
                tasks.c.id == claims.c.id,
                tasks.c.lease_id == claims.c.lease,
                state_in(TaskState.PROCESSING),
            )
            .values(
                state=TaskState.PENDING.value,
                attempt_count=sa.func.max(tasks.c.attempt_count - 1, 0),
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
            "gpu": 1 if budget is None or budget.gpu else 0,
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

    # -- acknowledgements ----------------------------------------------------------------

    async def complete(self, acks: Sequence[Completion], now: float, *, strict: bool) -> list[str]:
        """PROCESSING -> COMPLETED; returns the ids refused (stale lease or wrong state)."""
        return await self._finish("complete", acks, self._completion, now, strict=strict)

    def _completion(self, acks: Sequence[Completion]) -> tuple[Prepared, str]:
        """The completion statement for a chunk, and its acks as its JSON parameter.

        Acks without results or progress, each for another task (the common case), travel
        as one ``{id: lease}`` object, which SQLite unpacks faster than arrays.
        """
        if all(a.results is None and a.progress is None for a in acks):
            plain = {a.task_id: a.lease_id for a in acks}
            if len(plain) == len(acks):
                return self._sql.complete_plain, json.dumps(plain, separators=(",", ":"))
        return self._sql.complete, _completion_json(acks)

    async def fail(
        self, operation: str, acks: Sequence[Failure], now: float, *, strict: bool
    ) -> list[str]:
        """PROCESSING -> RETRYABLE (``retry``) or DISCARDED (``discard``), error recorded."""
        statement = self._sql.retry if operation == "retry" else self._sql.discard
        return await self._finish(
            operation, acks, lambda chunk: (statement, _failure_json(chunk)), now, strict=strict
        )

    async def _finish(
        self,
        operation: str,
        acks: Sequence[Any],
        encode: Callable[[Any], tuple[Prepared, str]],
        now: float,
        *,
        strict: bool,
    ) -> list[str]:
        # Encoded before the transaction: bad input is refused without taking the write lock.
        chunks = [(chunk, *encode(chunk)) for chunk in _chunks(acks)]

        def body(txn: Txn) -> list[str]:
            refused: list[str] = []
            for chunk, statement, encoded in chunks:
                rows = txn.rows(statement, acks=encoded, now=now)
                done = {row[0] for row in rows}
                missed = [a for a in chunk if a.task_id not in done]
                if missed and strict:
                    first = missed[0]
                    found = txn.rows(_state_and_lease, task_id=first.task_id)
                    raise _refusal(operation, first.task_id, first.lease_id, found)
                refused += [a.task_id for a in missed]
                dependencies.settle_rows(txn, target(operation), rows, now)
            return refused

        return await self._db.transaction(operation, body)

    async def _settle(
        self, conn: AsyncConnection, operation: str, rows: Sequence[Any], now: float
    ) -> None:
        await dependencies.settle_rows_on(conn, self._sql, target(operation), rows, now)

    async def transition(
        self,
        operation: str,
        task_id: str,
        values: dict[str, Any],
        *,
        lease_id: str | None = None,
    ) -> None:
        """One compare-and-set from ``sources(operation)`` to ``target(operation)``.

        ``values`` always sets ``updated_at``: it is also when dependents are settled.
        """
        values = {"state": target(operation).value, **values}
        condition = tasks.c.id == task_id
        if lease_id is not None:
            condition = sa.and_(condition, tasks.c.lease_id == lease_id)
        statement = (
            sa.update(tasks)
            .where(condition, state_in(*sources(operation)))
            .values(values)
            .returning(tasks.c.id, tasks.c.dependents)
        )
        async with self._db.write(operation, lock_first=False) as conn:
            row = (await conn.execute(statement)).first()
            if row is None:
                await self._raise_refusal(conn, operation, task_id, lease_id)
            else:
                await self._settle(conn, operation, [row], float(values["updated_at"]))

    async def cancel(self, task_id: str, now: float, reason: str | None) -> TaskState:
        """PENDING/RETRYABLE -> CANCELLED, or ask a PROCESSING task's worker to stop it."""
        values: dict[str, Any] = {"finished_at": now, "updated_at": now}
        if reason is not None:
            values["last_error"] = reason
        ended = (
            sa.update(tasks)
            .where(tasks.c.id == task_id, state_in(*sources("cancel")))
            .values(state=target("cancel").value, **values)
            .returning(tasks.c.id, tasks.c.dependents)
        )
        ask = (
            sa.update(tasks)
            .where(tasks.c.id == task_id, state_in(*sources("request_cancel")))
            .values(cancel_requested_at=sa.func.coalesce(tasks.c.cancel_requested_at, now))
            .returning(tasks.c.id)
        )
        async with self._db.write("cancel", lock_first=False) as conn:
            row = (await conn.execute(ended)).first()
            if row is not None:
                await self._settle(conn, "cancel", [row], now)
                return TaskState.CANCELLED
            if (await conn.execute(ask)).first() is not None:
                return TaskState.PROCESSING
            await self._raise_refusal(conn, "cancel", task_id, None)
        raise AssertionError("unreachable: _raise_refusal raises")

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
        async with self._db.write("extend_lease", lock_first=False) as conn:
            expires = (await conn.execute(statement)).scalar()
            if expires is None:
                await self._raise_refusal(conn, "extend_lease", task_id, lease_id)
        return float(expires)

    async def _raise_refusal(
        self, conn: AsyncConnection, operation: str, task_id: str, lease_id: str | None
    ) -> None:
        query = self._sql.of(_state_and_lease)
        found = (await conn.exec_driver_sql(query.sql, query.params(task_id=task_id))).all()
        raise _refusal(operation, task_id, lease_id, found)


def _state_and_lease() -> sa.Select[Any]:
    return sa.select(tasks.c.state, tasks.c.lease_id).where(tasks.c.id == sa.bindparam("task_id"))


def _refusal(
    operation: str, task_id: str, lease_id: str | None, found: Sequence[Any]
) -> QueueError:
    """Why ``operation`` changed nothing, from the task's ``(state, lease_id)`` (or none)."""
    if not found:
        return TaskNotFoundError(task_id)
    state, current_lease = found[0]
    if lease_id is not None and current_lease != lease_id:
        return LeaseLostError(task_id, operation, state, lease_id)
    expected = tuple(s.value for s in sources(operation))
    return InvalidStateTransitionError(task_id, operation, state, expected)


def _live_keys(txn: Txn, rows: list[InsertRow]) -> dict[str, str]:
    """Live tasks' ids by idempotency key, for the keys these rows carry."""
    keys = {row.idempotency_key for row in rows if row.idempotency_key is not None}
    if not keys:
        return {}
    found = txn.rows(_keys_taken, keys=json.dumps(sorted(keys)))
    return {str(key): str(task_id) for key, task_id in found}


def _keys_taken() -> sa.Select[Any]:
    return sa.select(tasks.c.idempotency_key, tasks.c.id).where(
        tasks.c.idempotency_key.in_(sa.text("SELECT value FROM json_each(:keys)")),
        state_in(*_LIVE),
    )


def _ids_taken() -> sa.Select[Any]:
    return sa.select(tasks.c.id).where(tasks.c.id.in_(sa.text("SELECT value FROM json_each(:ids)")))

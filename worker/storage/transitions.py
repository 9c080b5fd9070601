"""Acknowledgements and single-task transitions, in SQL: each one transaction.

State changes are compare-and-set statements built from :data:`worker.core.states.TRANSITIONS`
(``UPDATE ... WHERE id = :id AND state IN (:sources) [AND lease_id = :lease]``), so two
processes racing on one task can never both win. Batches of acknowledgements run statements
compiled once (:mod:`worker.storage.statements`) in one trip to the driver
(:mod:`worker.storage.txn`); a refusal says why, from the task's state and lease.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from worker.core.errors import (
    InvalidInputError,
    InvalidStateTransitionError,
    LeaseLostError,
    QueueError,
    TaskNotFoundError,
)
from worker.core.models import Completion, Failure
from worker.core.states import TaskState, sources, target
from worker.core.storable import safe_text
from worker.storage import dependencies, history
from worker.storage.database import Database
from worker.storage.rows import outcomes_json
from worker.storage.schema import tasks
from worker.storage.sql import greatest, lease_length, state_in
from worker.storage.statements import Prepared, Statements
from worker.storage.txn import Txn

#: Acknowledgements per statement when a caller hands over more than that.
_CHUNK = 1000


def _chunks(seq: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


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
    """The failures as the statement's JSON parameter. Error texts come from exceptions a
    handler cannot control, so a lone surrogate in one is escaped rather than refused: it
    would reach the row as bytes that are not UTF-8 (see :mod:`worker.core.storable`)."""
    return json.dumps(
        [[a.task_id, a.lease_id, _error_text(a), a.delay_s, None] for a in acks],
        separators=(",", ":"),
    )


def _error_text(failure: Failure) -> str:
    error = failure.error
    if not isinstance(error, str):
        raise InvalidInputError(
            f"task {failure.task_id}: error must be a string, got {type(error).__name__}"
        )
    return safe_text(error)


class TransitionStore:
    def __init__(self, db: Database, default_visibility_timeout: float) -> None:
        self._db = db
        self._default_vt = default_visibility_timeout

    @property
    def _sql(self) -> Statements:
        return self._db.statements

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
                # By lease, not id alone: of two acks for one task (a stale claim's and the
                # current one's), only the one whose lease the row holds was written.
                done = {(row[0], row[3]) for row in rows}
                ended = {row[0] for row in rows}
                missed = [
                    a
                    for a in chunk
                    if (a.task_id, a.lease_id) not in done
                    and (a.lease_id is not None or a.task_id not in ended)
                ]
                if missed and strict:
                    first = missed[0]
                    found = txn.rows(_state_and_lease, task_id=first.task_id)
                    raise _refusal(operation, first.task_id, first.lease_id, found)
                refused += [a.task_id for a in missed]
                dependencies.settle_rows(txn, target(operation), rows, now)
                if rows:
                    txn.many(self._sql.history, history.rows_of(rows, now))
            return refused

        return await self._db.transaction(operation, body, rows=len(acks))

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
        condition = tasks.c.id == task_id
        if lease_id is not None:
            condition = sa.and_(condition, tasks.c.lease_id == lease_id)
        statement = move(operation, condition, values)
        async with self._db.write(operation, lock_first=False) as conn:
            row = (await conn.execute(statement)).first()
            if row is None:
                await self._raise_refusal(conn, operation, task_id, lease_id)
            else:
                await self._settle(conn, operation, [row], float(values["updated_at"]))

    async def cancel(self, task_id: str, now: float, reason: str | None) -> TaskState:
        """PENDING/RETRYABLE -> CANCELLED, or ask a PROCESSING task's worker to stop it."""
        condition = tasks.c.id == task_id
        ended = move("cancel", condition, cancel_values(now, reason))
        ask = ask_to_stop(condition, now)
        async with self._db.write("cancel", lock_first=False) as conn:
            row = (await conn.execute(ended)).first()
            if row is not None:
                await self._settle(conn, "cancel", [row], now)
                return TaskState.CANCELLED
            if (await conn.execute(ask)).first() is not None:
                wake = self._db.backend.wake("cancels") if self._db.notifies else None
                if wake is not None:  # its worker may be on another machine
                    await conn.execute(wake)
                return TaskState.PROCESSING
            await self._raise_refusal(conn, "cancel", task_id, None)
        raise AssertionError("unreachable: _raise_refusal raises")

    async def resume(self, task_id: str, now: float, default_max_attempts: int) -> None:
        """DISCARDED -> PENDING, due now, with at least one attempt left."""
        await self.transition("resume", task_id, resume_values(now, default_max_attempts))

    async def extend_lease(
        self, task_id: str, lease_id: str, now: float, seconds: float | None
    ) -> float:
        """Renew a lease; returns its new expiry."""
        length = lease_length(seconds, self._default_vt)
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


def move(operation: str, condition: ColumnElement[bool], values: dict[str, Any]) -> sa.Update:
    """The compare-and-set of ``operation`` on the tasks ``condition`` picks: from
    ``sources(operation)`` to ``target(operation)``, setting ``values``; it returns each
    moved task's ``(id, dependents)`` (for :mod:`worker.storage.dependencies`)."""
    return (
        sa.update(tasks)
        .where(condition, state_in(*sources(operation)))
        .values({"state": target(operation).value, **values})
        .returning(tasks.c.id, tasks.c.dependents)
    )


def ask_to_stop(condition: ColumnElement[bool], now: float) -> sa.Update:
    """Ask the workers of the running tasks ``condition`` picks to stop them (a cancel of a
    running task); returns each one's id."""
    return (
        sa.update(tasks)
        .where(condition, state_in(*sources("request_cancel")))
        .values(cancel_requested_at=sa.func.coalesce(tasks.c.cancel_requested_at, now))
        .returning(tasks.c.id)
    )


def cancel_values(now: float, reason: str | None) -> dict[str, Any]:
    """What a cancel sets on a pending or retryable task (a hold ends with it: a held
    cancelled task would read as "cancelled and held", a hold on nothing)."""
    values: dict[str, Any] = {"finished_at": now, "updated_at": now, "held": False}
    if reason is not None:
        values["last_error"] = reason
    return values


def operator_values(operation: str, now: float) -> dict[str, Any]:
    """What ``hold``, ``unhold`` and ``run_now`` set on a pending task."""
    values: dict[str, dict[str, Any]] = {
        "hold": {"held": True},
        "unhold": {"held": False},
        "run_now": {"schedule_at": now},
    }
    return {**values[operation], "updated_at": now}


def resume_values(now: float, default_max_attempts: int) -> dict[str, Any]:
    """What a resume sets: due now, with at least one attempt left."""
    more = greatest(
        sa.func.coalesce(tasks.c.max_attempts, default_max_attempts),
        tasks.c.attempt_count + 1,
    )
    return {
        "schedule_at": now,
        "max_attempts": more,
        "finished_at": None,
        "lease_expires_at": None,
        "retry_delay": None,
        "updated_at": now,
    }


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
    if operation == "cancel":  # a running task is asked to stop (Transitions.cancel)
        expected += (TaskState.PROCESSING.value,)
    return InvalidStateTransitionError(task_id, operation, state, expected)

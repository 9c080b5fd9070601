"""The retry sweep, in SQL: the tasks of dead workers and expired leases come back, retryable
tasks are requeued after their backoff or discarded when their attempts (or their policy's
deadline) are used up.

A worker is dead when its liveness heartbeat (``workers.heartbeat_at``, renewed every few
seconds by a running :class:`~worker.runtime.workers.Worker`) is older than ``dead_before``, or when
it recorded that it stopped: its running tasks are expired at once, whatever their visibility
timeout, and are due again at once (the attempt that died is counted, as at every claim).
Tasks claimed outside a registered worker (no row in ``workers``) wait for their lease.

Every machine may sweep at once (PostgreSQL): each locks the rows it picks, skipping those
another transaction holds (``with_for_update(skip_locked=True)``; SQLite, one writer at a
time, has no such clause and needs none), so two sweeps never wait for each other, nor for a
worker frozen in the middle of a transaction on one of the rows (that row is swept once the
transaction ends), and every move re-checks the row's state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.core.limits import MAX_PRIORITY, MIN_PRIORITY
from worker.core.models import RetryPolicy, Task
from worker.core.states import TaskState, sources, target
from worker.storage import dependencies, undecodable
from worker.storage.database import Database
from worker.storage.rows import RAW_COLUMNS
from worker.storage.salvage import readable
from worker.storage.schema import tasks, workers
from worker.storage.sql import append_error, state_in

log = logging.getLogger(__name__)

EXPIRED_ERROR = "visibility timeout expired"
#: ``DEAD_WORKER_ERROR.format(worker)``, in SQL: the error of a task whose worker died.
DEAD_WORKER_ERROR = "worker {} stopped sending heartbeats (presumed dead)"
#: Rows of workers silent (or stopped) for this long are deleted by the sweep.
WORKER_RETENTION_S = 86_400.0
_CHUNK = 1000

#: ``(attempt, created_at, policy, requested delay) -> next attempt's time``, or None for no
#: more retries; the policy itself lives outside SQL (:func:`worker.core.backoff.next_attempt_at`).
RetryPlan = Callable[[int, float, RetryPolicy | None, float | None], float | None]


class SweepStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def sweep(
        self,
        size: int,
        now: float,
        *,
        visibility_timeout: float | None,
        max_attempts: int,
        plan: RetryPlan,
        dead_before: float | None = None,
    ) -> list[Task]:
        """Tasks of dead workers and expired leases -> RETRYABLE; RETRYABLE -> PENDING (after
        backoff; at once for a dead worker's) or DISCARDED. A requeued task's priority moves by
        its retry policy's ``priority_step``.

        One write transaction: on SQLite it holds the write lock from its first statement,
        so nothing it decides on can change under it.
        """
        async with self._db.write("retry sweep") as conn:
            orphaned = []
            if dead_before is not None:
                orphaned = await self._expire_dead_workers(conn, size, now, dead_before)
            expired = await self._expire_leases(conn, size, now, visibility_timeout)
            moved = await self._requeue_or_exhaust(conn, size, now, max_attempts, plan)
            if dead_before is not None:
                await self._forget_workers(conn, now - WORKER_RETENTION_S)
            moved_tasks = await _read_moved(
                conn, list(dict.fromkeys([*orphaned, *expired, *moved]))
            )
        return sorted(moved_tasks, key=lambda t: t.id)

    async def _expire_dead_workers(
        self, conn: AsyncConnection, size: int, now: float, dead_before: float
    ) -> list[str]:
        """Running tasks of workers silent since before ``dead_before`` (or stopped): due
        again at once (``retry_delay`` 0), or CANCELLED when a cancel was asked for."""
        dead = sa.select(workers.c.id).where(
            sa.or_(workers.c.heartbeat_at < dead_before, workers.c.stopped_at.is_not(None))
        )
        victims = (
            sa.select(tasks.c.id)
            .where(state_in(TaskState.PROCESSING), tasks.c.worker_id.in_(dead))
            .limit(size)
            .with_for_update(skip_locked=True)
        )
        prefix, suffix = DEAD_WORKER_ERROR.split("{}")
        error = sa.literal(prefix) + tasks.c.worker_id + sa.literal(suffix)
        return await self._expire(conn, victims, now, error, retry_delay=0.0)

    async def _forget_workers(self, conn: AsyncConnection, silent_since: float) -> None:
        """Delete the rows of workers silent since ``silent_since`` that hold no running task."""
        holding = sa.select(tasks.c.worker_id).where(
            state_in(TaskState.PROCESSING), tasks.c.worker_id.is_not(None)
        )
        await conn.execute(
            sa.delete(workers).where(
                workers.c.heartbeat_at < silent_since, workers.c.id.not_in(holding)
            )
        )

    async def _expire_leases(
        self, conn: AsyncConnection, size: int, now: float, visibility_timeout: float | None
    ) -> list[str]:
        """Expired leases: RETRYABLE (retried after the backoff), or CANCELLED when a cancel
        was asked for meanwhile."""
        if visibility_timeout is None:
            stale = tasks.c.lease_expires_at <= now
        else:  # the caller's timeout, counted from the last claim or renewal
            stale = tasks.c.updated_at <= now - visibility_timeout
        victims = (
            sa.select(tasks.c.id)
            .where(state_in(TaskState.PROCESSING), stale)
            .limit(size)
            .with_for_update(skip_locked=True)
        )
        return await self._expire(conn, victims, now, sa.literal(EXPIRED_ERROR), retry_delay=None)

    async def _expire(
        self,
        conn: AsyncConnection,
        victims: sa.Select[Any],
        now: float,
        error: sa.ColumnElement[Any],
        *,
        retry_delay: float | None,
    ) -> list[str]:
        cancelled = tasks.c.cancel_requested_at.is_not(None)
        statement = (
            sa.update(tasks)
            .where(tasks.c.id.in_(victims.scalar_subquery()), state_in(*sources("expire")))
            .values(
                state=sa.case((cancelled, TaskState.CANCELLED.value), else_=target("expire").value),
                finished_at=sa.case((cancelled, now), else_=None),
                last_error=error,
                errors=append_error(error, now, expired=True),
                expired_count=tasks.c.expired_count + 1,
                lease_id=None,
                lease_expires_at=None,
                retry_delay=retry_delay,
                updated_at=now,
            )
            .returning(tasks.c.id, tasks.c.state, tasks.c.dependents)
        )
        rows = (await conn.execute(statement)).all()
        settled = [(i, n, state) for i, state, n in rows]
        await dependencies.settle_rows_on(
            conn, self._db.statements, TaskState.CANCELLED, settled, now
        )
        return [str(row[0]) for row in rows]

    async def _requeue_or_exhaust(
        self, conn: AsyncConnection, size: int, now: float, max_attempts: int, plan: RetryPlan
    ) -> list[str]:
        query = (
            sa.select(
                tasks.c.id,
                tasks.c.attempt_count,
                tasks.c.max_attempts,
                tasks.c.retry_delay,
                tasks.c.created_at,
                sa.type_coerce(tasks.c.retry_policy, sa.Text),
            )
            .where(state_in(TaskState.RETRYABLE))
            .order_by(tasks.c.updated_at)
            .limit(size)
            .with_for_update(skip_locked=True)
        )
        requeue: list[dict[str, Any]] = []
        used_up: list[str] = []
        too_late: list[str] = []
        found, _ = await undecodable.rows(conn, query)
        for task_id, attempts, own_max, requested, created_at, policy in found:
            if attempts >= (own_max if own_max is not None else max_attempts):
                used_up.append(task_id)
                continue
            parsed = _policy(task_id, policy)
            at = plan(max(attempts, 1), created_at, parsed, requested)
            if at is None:
                too_late.append(task_id)
            else:
                step = 0 if parsed is None else parsed.priority_step
                requeue.append({"b_id": task_id, "b_schedule_at": at, "b_step": step})
        if requeue:
            await conn.execute(
                sa.update(tasks)
                .where(tasks.c.id == sa.bindparam("b_id"), state_in(*sources("requeue")))
                .values(
                    state=target("requeue").value,
                    schedule_at=sa.bindparam("b_schedule_at"),
                    priority=_stepped(sa.bindparam("b_step", type_=sa.Integer)),
                    retry_delay=None,
                    updated_at=now,
                ),
                requeue,
            )
        await self._exhaust(conn, used_up, now, None)
        await self._exhaust(conn, too_late, now, " (no retry: past the retry policy's deadline)")
        return [row["b_id"] for row in requeue] + used_up + too_late

    async def _exhaust(
        self, conn: AsyncConnection, ids: list[str], now: float, note: str | None
    ) -> None:
        if not ids:
            return
        values: dict[str, Any] = {
            "state": target("exhaust").value,
            "finished_at": now,
            "updated_at": now,
        }
        if note is not None:
            values["last_error"] = sa.func.coalesce(tasks.c.last_error, "") + note
        statement = (
            sa.update(tasks)
            .where(tasks.c.id.in_(ids), state_in(*sources("exhaust")))
            .values(values)
            .returning(tasks.c.id, tasks.c.dependents)
        )
        rows = (await conn.execute(statement)).all()
        await dependencies.settle_rows_on(conn, self._db.statements, target("exhaust"), rows, now)


def _stepped(step: sa.BindParameter[int]) -> sa.ColumnElement[int]:
    """The priority moved by its retry policy's ``priority_step``, kept within the range."""
    moved = tasks.c.priority + step
    return sa.case(
        (moved > MAX_PRIORITY, MAX_PRIORITY), (moved < MIN_PRIORITY, MIN_PRIORITY), else_=moved
    )


async def _read_moved(conn: AsyncConnection, ids: list[str]) -> list[Task]:
    """The tasks the sweep moved, in their new state; a row that cannot be read whole is
    shown as far as it can be, and logged (:mod:`worker.storage.salvage`), never stops the sweep."""
    moved: list[Task] = []
    for start in range(0, len(ids), _CHUNK):
        query = sa.select(*RAW_COLUMNS).where(tasks.c.id.in_(ids[start : start + _CHUNK]))
        rows, tolerant = await undecodable.rows(conn, query)
        moved += [task for row in rows if (task := readable(row, tolerant=tolerant)) is not None]
    return moved


def _policy(task_id: str, stored: str | None) -> RetryPolicy | None:
    """A retryable task's stored retry policy; one that cannot be read (not UTF-8, or no
    longer valid) is logged and the queue's backoff applies."""
    if stored is None:
        return None
    if type(stored) is undecodable.Garbled:
        log.warning(
            "task %s: its retry policy is not UTF-8 text; the queue's backoff applies", task_id
        )
        return None
    try:
        return RetryPolicy.model_validate_json(stored)
    except ValueError as error:
        log.warning(
            "task %s: its retry policy cannot be read (the queue's backoff applies): %s",
            task_id,
            error,
        )
        return None

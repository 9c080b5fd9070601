"""SQL for workers and operators: lease heartbeats and lease reports, the worker registry and
its liveness beats, paused queues, a task's place in line and unfinished dependencies,
statistics over a window, and retention (purge, which also deletes what refers to the purged
tasks: their dependency edges and webhook deliveries). Release is with the claim
(:mod:`worker.storage.enqueue_claim`); holds, progress and checkpoints are single-task moves
(:mod:`worker.storage.transitions`).

Every task write is a compare-and-set fenced by the caller's lease where it has one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.core.states import TaskState
from worker.storage import read_results, undecodable
from worker.storage.database import Database
from worker.storage.schema import (
    paused_queues,
    task_callbacks,
    task_dependencies,
    tasks,
    webhook_deliveries,
    workers,
)
from worker.storage.sql import JsonValues, json_values, lease_length, state_in, under_leases

_PURGE_BATCH = 5000


@dataclass(frozen=True, slots=True)
class LeaseReport:
    """What a look at running tasks found: leases lost (the task was taken away, or ended),
    and cancels asked for."""

    lost: list[str]
    cancel_requested: list[str]


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """What a batch lease renewal found: new expiries, leases lost, cancels asked for."""

    renewed: dict[str, float]
    lost: list[str]
    cancel_requested: list[str]


class ControlStore:
    def __init__(self, db: Database, default_visibility_timeout: float) -> None:
        self._db = db
        self._default_vt = default_visibility_timeout

    # -- running tasks -------------------------------------------------------------------

    async def heartbeat(
        self, leases: Sequence[tuple[str, str]], now: float, seconds: float | None
    ) -> Heartbeat:
        """Renew many leases in one statement (a worker's heartbeat)."""
        if not leases:
            return Heartbeat({}, [], [])
        length = lease_length(seconds, self._default_vt)
        statement = (
            sa.update(tasks)
            .where(under_leases("leases"))
            .values(lease_expires_at=now + length, updated_at=now)
            .returning(tasks.c.id, tasks.c.lease_expires_at, tasks.c.cancel_requested_at)
        )
        async with self._db.write("heartbeat", lock_first=False) as conn:
            rows = (await conn.execute(statement, {"leases": json.dumps(list(leases))})).all()
        renewed = {str(i): float(at) for i, at, _ in rows}
        return Heartbeat(
            renewed,
            [task_id for task_id, _ in leases if task_id not in renewed],
            [str(i) for i, _, asked in rows if asked is not None],
        )

    async def lease_report(self, leases: Sequence[tuple[str, str]]) -> LeaseReport:
        """Which of these ``(task_id, lease_id)`` claims are lost or asked to stop (a read)."""
        if not leases:
            return LeaseReport([], [])
        async with self._db.read("lease report") as conn:
            return await _lease_report(conn, leases)

    # -- operators -----------------------------------------------------------------------

    async def pause_queue(self, queue: str, now: float) -> None:
        statement = (
            self._db.backend.insert(paused_queues)
            .values(queue=queue, paused_at=now)
            .on_conflict_do_nothing(index_elements=[paused_queues.c.queue])
        )
        async with self._db.write("pause", lock_first=False) as conn:
            await conn.execute(statement)

    async def unpause_queue(self, queue: str) -> bool:
        statement = sa.delete(paused_queues).where(paused_queues.c.queue == queue)
        async with self._db.write("unpause", lock_first=False) as conn:
            return bool((await conn.execute(statement)).rowcount)

    async def paused(self) -> dict[str, float]:
        async with self._db.read("paused queues") as conn:
            return read_results.paused((await conn.execute(paused_rows())).all())

    async def position(self, task_id: str, queue: str, priority: int, now: float) -> int:
        """How many claimable tasks of the same queue a claim would take before this one."""
        query = self._db.backend.position().bindparams(
            now=now, queue=queue, priority=priority, id=task_id
        )
        async with self._db.read("position") as conn:
            return int((await conn.execute(query)).scalar_one())

    async def unfinished_dependencies(self, task_id: str) -> list[tuple[str, str]]:
        """The dependencies of a task that have not completed, with their states."""
        async with self._db.read("dependencies") as conn:
            rows = (await conn.execute(unfinished_dependencies(task_id))).all()
        return read_results.id_states(rows)

    async def dependents(self, task_id: str) -> list[tuple[str, str]]:
        """The tasks that depend on a task, with their states (in id order)."""
        query = (
            sa.select(tasks.c.id, tasks.c.state)
            .select_from(task_dependencies.join(tasks, tasks.c.id == task_dependencies.c.task_id))
            .where(task_dependencies.c.depends_on == task_id)
            .order_by(tasks.c.id)
        )
        async with self._db.read("dependents") as conn:
            return [(str(i), str(s)) for i, s in (await conn.execute(query)).all()]

    # -- workers -------------------------------------------------------------------------

    async def register_worker(self, row: dict[str, Any]) -> None:
        insert = self._db.backend.insert(workers).values(row)
        statement = insert.on_conflict_do_update(
            index_elements=[workers.c.id],
            set_={name: insert.excluded[name] for name in row if name != "id"},
        )
        async with self._db.write("register worker", lock_first=False) as conn:
            await conn.execute(statement)

    async def worker_heartbeat(self, worker_id: str, now: float, *, stopped: bool = False) -> None:
        values: dict[str, Any] = {"heartbeat_at": now}
        if stopped:
            values["stopped_at"] = now
        statement = sa.update(workers).where(workers.c.id == worker_id).values(values)
        async with self._db.write("worker heartbeat", lock_first=False) as conn:
            await conn.execute(statement)

    async def worker_alive(
        self, worker_id: str, now: float, leases: Sequence[tuple[str, str]]
    ) -> LeaseReport | None:
        """A worker's liveness beat: one write that records it alive, and, in the same
        transaction, which of its running claims were lost or asked to stop. None when the
        worker has no row (it was pruned, or never registered): register it again."""
        statement = (
            sa.update(workers)
            .where(workers.c.id == worker_id)
            .values(heartbeat_at=now, stopped_at=None)
        )
        async with self._db.write("worker heartbeat", lock_first=False) as conn:
            if not (await conn.execute(statement)).rowcount:
                return None
            return await _lease_report(conn, leases) if leases else LeaseReport([], [])

    async def live_workers(self, since: float) -> list[dict[str, Any]]:
        async with self._db.read("workers") as conn:
            found = [row._mapping for row in (await conn.execute(live_workers(since))).all()]
            running = (await conn.execute(running_per_worker())).all() if found else []
        return read_results.live_workers(found, running)

    # -- statistics and retention --------------------------------------------------------

    async def window(self, since: float) -> dict[str, Any]:
        """Figures over tasks that finished since ``since`` (through the finished index)."""
        async with self._db.read("statistics") as conn:
            finished = (await conn.execute(finished_since(since))).all()
            oldest_pending = (await conn.execute(self._db.backend.oldest_pending())).scalar()
            # A queue name that is not UTF-8 (written by another program) comes back with
            # U+FFFD in it rather than failing the statistics.
            per_queue = (await undecodable.rows(conn, PER_QUEUE_AND_STATE))[0]
        return read_results.window(finished, oldest_pending, per_queue)

    async def purge(self, cutoff: float, states: Iterable[TaskState]) -> list[str]:
        """Delete finished tasks in batches (each its own short transaction), and in the same
        transaction their dependency edges, their webhook deliveries and their callbacks (run or
        not).
        Returns the ids deleted, in batch order."""
        chosen = tuple(states)
        deleted: list[str] = []
        while True:
            victims = (
                sa.select(tasks.c.id)
                .where(tasks.c.finished_at <= cutoff, state_in(*chosen))
                .limit(_PURGE_BATCH)
            )
            async with self._db.write("purge", lock_first=False) as conn:
                statement = sa.delete(tasks).where(tasks.c.id.in_(victims.scalar_subquery()))
                ids = [
                    str(row[0])
                    for row in (await conn.execute(statement.returning(tasks.c.id))).all()
                ]
                await _forget_dependencies(conn, ids)
                await _forget_deliveries(conn, ids)
            deleted.extend(ids)
            if len(ids) < _PURGE_BATCH:
                return deleted


async def _lease_report(conn: AsyncConnection, leases: Sequence[tuple[str, str]]) -> LeaseReport:
    ids = json.dumps([task_id for task_id, _ in leases])
    query = sa.select(
        tasks.c.id, tasks.c.lease_id, tasks.c.state, tasks.c.cancel_requested_at
    ).where(tasks.c.id.in_(json_values("ids")))
    found = {
        str(i): (lease, state, asked)
        for i, lease, state, asked in await conn.execute(query, {"ids": ids})
    }
    processing = TaskState.PROCESSING.value
    lost: list[str] = []
    asked_to_stop: list[str] = []
    for task_id, lease_id in leases:
        lease, state, asked = found.get(task_id, (None, None, None))
        if lease != lease_id or state != processing:
            lost.append(task_id)
        elif asked is not None:
            asked_to_stop.append(task_id)
    return LeaseReport(lost, asked_to_stop)


def _gone() -> JsonValues:
    """The purged ids, as the JSON list in parameter ``:gone`` given when the statement
    runs (a value bound in the statement would be cached with its compiled form)."""
    return json_values("gone")


async def _forget_dependencies(conn: AsyncConnection, ids: list[str]) -> None:
    if not ids:
        return
    gone = _gone()
    await conn.execute(
        sa.delete(task_dependencies).where(
            sa.or_(task_dependencies.c.task_id.in_(gone), task_dependencies.c.depends_on.in_(gone))
        ),
        {"gone": json.dumps(ids)},
    )


async def _forget_deliveries(conn: AsyncConnection, ids: list[str]) -> None:
    """Delete the webhook deliveries and callbacks of purged tasks: a pending one has nothing
    left to report,
    and the others would only grow the table (it is looked up by its leading ``task_id``)."""
    if not ids:
        return
    gone = {"gone": json.dumps(ids)}
    deliveries = webhook_deliveries.c.task_id.in_(_gone())
    await conn.execute(sa.delete(webhook_deliveries).where(deliveries), gone)
    await conn.execute(sa.delete(task_callbacks).where(task_callbacks.c.task_id.in_(_gone())), gone)


# -- the reads' statements (also compiled ahead for wq's read commands: quick_statements) --


def paused_rows() -> sa.Select[Any]:
    """Rows of ``(queue, paused_at)``."""
    return sa.select(paused_queues.c.queue, paused_queues.c.paused_at)


def unfinished_dependencies(task_id: str) -> sa.Select[Any]:
    """Rows of ``(id, state)``: the dependencies of a task that have not completed."""
    return (
        sa.select(tasks.c.id, tasks.c.state)
        .select_from(task_dependencies.join(tasks, tasks.c.id == task_dependencies.c.depends_on))
        .where(
            task_dependencies.c.task_id == task_id,
            tasks.c.state != TaskState.COMPLETED.value,
        )
        .order_by(tasks.c.id)
    )


def live_workers(since: float) -> sa.Select[Any]:
    """The workers that beat since ``since`` and did not stop, every column (``queues`` as
    its JSON text), oldest first."""
    columns = [sa.type_coerce(c, sa.Text).label(c.name) if c.name == "queues" else c
               for c in workers.c]  # fmt: skip
    return (
        sa.select(*columns)
        .where(workers.c.heartbeat_at >= since, workers.c.stopped_at.is_(None))
        .order_by(workers.c.started_at)
    )


def running_per_worker() -> sa.Select[Any]:
    """Rows of ``(worker_id, count)``: running tasks per worker, the few processing rows
    found through the lease index."""
    return (
        sa.select(tasks.c.worker_id, sa.func.count())
        .where(state_in(TaskState.PROCESSING), tasks.c.worker_id.is_not(None))
        .group_by(tasks.c.worker_id)
    )


def finished_since(since: float) -> sa.Select[Any]:
    """Rows of ``(state, duration, attempts)`` of the newest tasks that finished since
    ``since`` (at most :data:`~worker.storage.read_results.WINDOW_ROWS`)."""
    return (
        sa.select(
            tasks.c.state,
            tasks.c.finished_at - tasks.c.started_at,
            tasks.c.attempt_count,
        )
        .where(tasks.c.finished_at >= since)
        .order_by(tasks.c.finished_at.desc())
        .limit(read_results.WINDOW_ROWS)
    )


#: Rows of ``(queue, state, count)``.
PER_QUEUE_AND_STATE = sa.text("SELECT queue, state, count(*) FROM tasks GROUP BY queue, state")

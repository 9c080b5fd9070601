"""The PostgreSQL backend's own statements: the claim as one CTE ``FOR UPDATE SKIP LOCKED``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from worker.core.states import TaskState
from worker.storage.backend import Backend, Capabilities, Insert, Wake
from worker.storage.postgres.copy import Copy
from worker.storage.postgres.listener import CANCELS_CHANNEL, TASKS_CHANNEL, Listener, notify
from worker.storage.read_results import STATE_INDEXES
from worker.storage.schema import paused_queues, tasks
from worker.storage.sql import json_values, state_in

_PENDING = TaskState.PENDING.value


#: The advisory lock key migrations take (any constant; this one spells "wqmigrat").
MIGRATION_LOCK = int.from_bytes(b"wqmigrat", "big") - 2**63
_CHANNELS: dict[Wake, str] = {"tasks": TASKS_CHANNEL, "cancels": CANCELS_CHANNEL}


class PostgresBackend(Backend):
    name = "postgresql"
    capabilities = Capabilities(pushes_wakeups=True, single_writer=False, many_machines=True)

    def insert(self, table: sa.Table) -> Insert:
        return postgresql.insert(table)

    def _claimable(self, *, by_queue: bool) -> sa.Select[Any]:
        query = sa.select(tasks.c.id).where(
            state_in(TaskState.PENDING),
            tasks.c.schedule_at <= sa.bindparam("now", type_=sa.Float),
            tasks.c.held.is_(sa.false()),
            tasks.c.waiting_on == 0,
            tasks.c.memory_bytes <= sa.bindparam("memory", type_=sa.BigInteger),
            tasks.c.cpu_share <= sa.bindparam("cpu", type_=sa.Float),
            tasks.c.needs_gpu <= sa.bindparam("gpu", type_=sa.Boolean),
            tasks.c.queue.not_in(sa.select(paused_queues.c.queue)),
        )
        if by_queue:
            query = query.where(tasks.c.queue.in_(json_values("queues")))
        return query

    def due(self, *, by_queue: bool, limit: bool) -> sa.Select[Any]:
        query = self._claimable(by_queue=by_queue)
        if not limit:
            return query.limit(1)
        return query.order_by(tasks.c.priority.desc(), tasks.c.id).limit(
            sa.bindparam("size", type_=sa.Integer)
        )

    def claim(self, *, by_queue: bool, values: dict[str, Any], returning: list[Any]) -> Any:
        # Rows another claim holds are skipped, not waited for; the state check in the
        # UPDATE is what makes a row claimed twice impossible even so (a row is only locked
        # once the CTE has read it as pending, and the UPDATE re-reads it under the lock).
        due = self.due(by_queue=by_queue, limit=True).with_for_update(skip_locked=True).cte("due")
        return (
            sa.update(tasks)
            .where(tasks.c.id == due.c.id, state_in(TaskState.PENDING))
            .values(**values)
            .returning(*returning)
        )

    def state_counts(self, *, by_queue: bool) -> sa.TextClause:
        # Each state's count uses its partial index (PostgreSQL's planner picks it).
        filters = " AND queue = :queue" if by_queue else ""
        counts = ", ".join(
            f"(SELECT count(*) FROM tasks WHERE state = '{state.value}'{filters})"
            for state in STATE_INDEXES
        )
        total = "(SELECT count(*) FROM tasks" + (" WHERE queue = :queue" if by_queue else "")
        return sa.text(f"SELECT {total}), {counts}")

    def queue_counts(self, state: TaskState) -> sa.TextClause:
        return sa.text(
            f"SELECT queue, count(*) FROM tasks WHERE state = '{state.value}' GROUP BY queue"
        )

    def position(self) -> sa.TextClause:
        return sa.text(
            f"SELECT count(*) FROM tasks WHERE state = '{_PENDING}' "
            "AND schedule_at <= :now AND NOT held AND waiting_on = 0 AND queue = :queue "
            "AND (priority > :priority OR (priority = :priority AND id < :id))"
        )

    def wake(self, what: Wake) -> sa.TextClause:
        return notify(_CHANNELS[what])

    def listener(self, url: str, on_wake: dict[Wake, Callable[[], None]]) -> Listener:
        return Listener(url, {_CHANNELS[what]: callback for what, callback in on_wake.items()})

    def bulk_load(self, columns: Sequence[str]) -> Copy:
        # Binary COPY: no statement to plan, no arrays to unpack, no casts of JSON text.
        return Copy("tasks", columns)

    def key_locks(self) -> sa.TextClause:
        # Transaction-level advisory locks on the keys' 64-bit hashes, taken in the sorted
        # order the caller passes (two batches never wait for each other in a cycle).
        return sa.text(
            "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0))) "
            "FROM jsonb_array_elements_text(CAST(:keys AS jsonb)) WITH ORDINALITY AS t(k, n)"
        )

    def pending_by_queue(self) -> sa.Select[Any]:
        return (
            sa.select(tasks.c.queue, sa.func.count())
            .where(state_in(TaskState.PENDING), tasks.c.queue.in_(json_values("queues")))
            .group_by(tasks.c.queue)
        )

    def queue_locks(self) -> sa.TextClause:
        # As key_locks, in a space of their own (the hash's seed): a queue named like a key
        # never shares its lock.
        return sa.text(
            "SELECT count(pg_advisory_xact_lock(hashtextextended(q, 1))) "
            "FROM jsonb_array_elements_text(CAST(:queues AS jsonb)) WITH ORDINALITY AS t(q, n)"
        )

    def migration_lock(self) -> sa.TextClause:
        # A transaction-level advisory lock: processes on many machines starting at once
        # migrate one after the other (the later ones find the schema at head); released
        # with the transaction, even when its connection dies.
        return sa.text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")

    def server_time(self) -> sa.TextClause:
        # clock_timestamp(), not now(): now() is the transaction's start.
        return sa.text("SELECT extract(epoch FROM clock_timestamp())::float8")

    def oldest_pending(self) -> sa.TextClause:
        return sa.text(f"SELECT min(created_at) FROM tasks WHERE state = '{_PENDING}'")

"""Task dependencies, in SQL: a task is not claimed until every task it depends on completed.

A dependent task carries ``waiting_on``, the number of its dependencies not yet completed (the
claim skips tasks with ``waiting_on > 0``); every task carries ``dependents``, how many tasks
wait on it, so that finishing a task with none costs no extra statement. When a dependency
completes its dependents count down; when it ends discarded or cancelled, its dependents (and
theirs) are cancelled with an error that names it. Each function runs inside the caller's
write transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.core.errors import InvalidTaskError
from worker.core.states import TaskState
from worker.storage.rows import ROW_DEPENDS_ON, ROW_ID, InsertRow
from worker.storage.schema import task_dependencies, tasks
from worker.storage.sql import json_values, state_in
from worker.storage.statements import Statements
from worker.storage.txn import ConnectionTxn, Txn

_LIVE_WAITING = (TaskState.PENDING, TaskState.RETRYABLE)
_ENDED_BADLY = (TaskState.DISCARDED, TaskState.CANCELLED)


def _each(name: str) -> sa.TextClause:
    """The elements of the JSON list in ``:name``: a list travels as one JSON parameter."""
    return json_values(name)


def _states() -> sa.Select[Any]:
    return sa.select(tasks.c.id, tasks.c.state).where(tasks.c.id.in_(_each("ids")))


def _set_waiting() -> sa.Update:
    return (
        sa.update(tasks)
        .where(tasks.c.id == sa.bindparam("b_id"))
        .values(
            waiting_on=sa.bindparam("b_waiting"),
            state=sa.func.coalesce(sa.bindparam("b_state", type_=sa.String), tasks.c.state),
            last_error=sa.func.coalesce(
                sa.bindparam("b_error", type_=sa.String), tasks.c.last_error
            ),
            finished_at=sa.func.coalesce(
                sa.bindparam("b_finished", type_=sa.Float), tasks.c.finished_at
            ),
        )
    )


def _add_link() -> sa.Insert:
    return sa.insert(task_dependencies).values(
        task_id=sa.bindparam("task_id"), depends_on=sa.bindparam("depends_on")
    )


def _count_dependents() -> sa.Update:
    return (
        sa.update(tasks)
        .where(tasks.c.id == sa.bindparam("b_id"))
        .values(dependents=tasks.c.dependents + sa.bindparam("b_n"))
    )


def link(txn: Txn, rows: Sequence[InsertRow], now: float) -> None:
    """Record the dependencies of freshly inserted rows (same transaction as the insert).

    Sets each row's ``waiting_on``; a row that depends on a task that already ended discarded
    or cancelled is cancelled at once. Unknown dependency ids refuse the whole batch.
    """
    wanted = {dep for row in rows for dep in json.loads(row[ROW_DEPENDS_ON] or "[]")}
    if not wanted:
        return
    batch = {row[ROW_ID] for row in rows}
    outside = sorted(wanted - batch)
    found = {str(i): str(s) for i, s in txn.rows(_states, ids=json.dumps(outside))}
    links: list[dict[str, Any]] = []
    waiting: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        deps: list[str] = json.loads(row[ROW_DEPENDS_ON] or "[]")
        if not deps:
            continue
        missing = [d for d in deps if d not in batch and d not in found]
        if missing:
            raise InvalidTaskError(
                f"tasks[{index}].depends_on: no task {', '.join(missing)} (unknown id)"
            )
        links += [{"task_id": row[ROW_ID], "depends_on": dep} for dep in deps]
        failed = [d for d in deps if found.get(d) in {s.value for s in _ENDED_BADLY}]
        waiting.append(
            {
                "b_id": row[ROW_ID],
                "b_waiting": sum(
                    1 for d in deps if d in batch or found[d] != TaskState.COMPLETED.value
                ),
                "b_state": TaskState.CANCELLED.value if failed else None,
                "b_error": f"cancelled: dependency {failed[0]} ended {found[failed[0]]}"
                if failed
                else None,
                "b_finished": now if failed else None,
            }
        )
    txn.many(_set_waiting, waiting)
    txn.many(_add_link, links)
    counts: dict[str, int] = {}
    for entry in links:
        counts[entry["depends_on"]] = counts.get(entry["depends_on"], 0) + 1
    txn.many(_count_dependents, [{"b_id": dep, "b_n": n} for dep, n in counts.items()])


def settle_rows(txn: Txn, default: TaskState, rows: Sequence[Any], now: float) -> None:
    """Release or cancel the dependents of tasks a statement just moved.

    ``rows`` are ``(id, dependents[, state])``; without the state, ``default``. Tasks without
    dependents cost nothing.
    """
    done: list[str] = []
    ended: list[str] = []
    for row in rows:
        if not row[1]:
            continue
        state = TaskState(row[2]) if len(row) > 2 else default
        if state is TaskState.COMPLETED:
            done.append(str(row[0]))
        elif state in _ENDED_BADLY:
            ended.append(str(row[0]))
    if done or ended:
        settle(txn, done, ended, now)


async def settle_rows_on(
    conn: AsyncConnection,
    statements: Statements,
    default: TaskState,
    rows: Sequence[Any],
    now: float,
) -> None:
    """:func:`settle_rows` inside a transaction of SQLAlchemy's async API."""
    if any(row[1] for row in rows):
        await conn.run_sync(
            lambda sync: settle_rows(ConnectionTxn(sync, statements), default, rows, now)
        )


def _countdown() -> sa.Update:
    done = _each("done")
    countdown = (
        sa.select(sa.func.count())
        .select_from(task_dependencies)
        .where(
            task_dependencies.c.task_id == tasks.c.id,
            task_dependencies.c.depends_on.in_(done),
        )
        .scalar_subquery()
    )
    waiting = sa.select(task_dependencies.c.task_id).where(task_dependencies.c.depends_on.in_(done))
    return (
        sa.update(tasks)
        .where(tasks.c.id.in_(waiting))
        .values(waiting_on=tasks.c.waiting_on - countdown)
    )


def settle(txn: Txn, completed: Sequence[str], ended: Sequence[str], now: float) -> None:
    """Tasks that just completed release their dependents; ended ones cancel theirs.

    Call only with tasks whose ``dependents`` is above zero.
    """
    if completed:
        txn.rows(_countdown, done=json.dumps(list(completed)))
    frontier = list(ended)
    while frontier:
        cancelled = txn.rows(_cancel_dependents, gone=json.dumps(frontier), now=now)
        frontier = [str(i) for i, n in cancelled if n]


def _cancel_dependents() -> sa.Update:
    """Cancel the live dependents of ``:gone``; returns them and their own dependents."""
    gone = _each("gone")
    dependency = task_dependencies.alias("d")
    upstream = tasks.alias("up")
    reason = (
        sa.select(
            sa.literal("cancelled: dependency ")
            + dependency.c.depends_on
            + sa.literal(" ended ")
            + upstream.c.state
        )
        .select_from(dependency.join(upstream, upstream.c.id == dependency.c.depends_on))
        .where(dependency.c.task_id == tasks.c.id, dependency.c.depends_on.in_(gone))
        .limit(1)
        .scalar_subquery()
    )
    waiting = sa.select(task_dependencies.c.task_id).where(task_dependencies.c.depends_on.in_(gone))
    now = sa.bindparam("now", type_=sa.Float)
    return (
        sa.update(tasks)
        .where(tasks.c.id.in_(waiting), state_in(*_LIVE_WAITING))
        .values(
            state=TaskState.CANCELLED.value,
            last_error=reason,
            finished_at=now,
            updated_at=now,
            lease_expires_at=None,
        )
        .returning(tasks.c.id, tasks.c.dependents)
    )

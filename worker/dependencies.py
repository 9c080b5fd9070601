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

from worker.errors import InvalidTaskError
from worker.schema import task_dependencies, tasks
from worker.sqlfn import state_in
from worker.states import TaskState

_LIVE_WAITING = (TaskState.PENDING, TaskState.RETRYABLE)
_ENDED_BADLY = (TaskState.DISCARDED, TaskState.CANCELLED)


def _each(name: str) -> sa.TextClause:
    return sa.text(f"SELECT value FROM json_each(:{name})")


async def link(conn: AsyncConnection, rows: list[dict[str, Any]], now: float) -> None:
    """Record the dependencies of freshly inserted rows (same transaction as the insert).

    Sets each row's ``waiting_on``; a row that depends on a task that already ended discarded
    or cancelled is cancelled at once. Unknown dependency ids refuse the whole batch.
    """
    wanted = {dep for row in rows for dep in json.loads(row["depends_on"] or "[]")}
    if not wanted:
        return
    batch = {row["id"] for row in rows}
    found: dict[str, str] = {}
    outside = sorted(wanted - batch)
    for start in range(0, len(outside), 500):
        chunk = outside[start : start + 500]
        query = sa.select(tasks.c.id, tasks.c.state).where(tasks.c.id.in_(chunk))
        found.update({str(i): str(s) for i, s in (await conn.execute(query)).all()})
    links: list[dict[str, str]] = []
    for index, row in enumerate(rows):
        deps: list[str] = json.loads(row["depends_on"] or "[]")
        if not deps:
            continue
        missing = [d for d in deps if d not in batch and d not in found]
        if missing:
            raise InvalidTaskError(
                f"tasks[{index}].depends_on: no task {', '.join(missing)} (unknown id)"
            )
        links += [{"task_id": row["id"], "depends_on": dep} for dep in deps]
        waiting = sum(1 for d in deps if d in batch or found[d] != TaskState.COMPLETED.value)
        failed = [d for d in deps if found.get(d) in {s.value for s in _ENDED_BADLY}]
        values: dict[str, Any] = {"waiting_on": waiting}
        if failed:
            values |= {
                "state": TaskState.CANCELLED.value,
                "last_error": f"cancelled: dependency {failed[0]} ended {found[failed[0]]}",
                "finished_at": now,
            }
        await conn.execute(sa.update(tasks).where(tasks.c.id == row["id"]).values(values))
    await conn.execute(sa.insert(task_dependencies), links)
    counts: dict[str, int] = {}
    for entry in links:
        counts[entry["depends_on"]] = counts.get(entry["depends_on"], 0) + 1
    await conn.execute(
        sa.update(tasks)
        .where(tasks.c.id == sa.bindparam("b_id"))
        .values(dependents=tasks.c.dependents + sa.bindparam("b_n")),
        [{"b_id": dep, "b_n": n} for dep, n in counts.items()],
    )


async def settle_rows(
    conn: AsyncConnection, default: TaskState, rows: Sequence[Any], now: float
) -> None:
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
        await settle(conn, done, ended, now)


async def settle(
    conn: AsyncConnection, completed: Sequence[str], ended: Sequence[str], now: float
) -> None:
    """Tasks that just completed release their dependents; ended ones cancel theirs.

    Call only with tasks whose ``dependents`` is above zero.
    """
    if completed:
        done = _each("done").bindparams(done=json.dumps(list(completed)))
        countdown = (
            sa.select(sa.func.count())
            .select_from(task_dependencies)
            .where(
                task_dependencies.c.task_id == tasks.c.id,
                task_dependencies.c.depends_on.in_(done),
            )
            .scalar_subquery()
        )
        waiting = sa.select(task_dependencies.c.task_id).where(
            task_dependencies.c.depends_on.in_(done)
        )
        await conn.execute(
            sa.update(tasks)
            .where(tasks.c.id.in_(waiting))
            .values(waiting_on=tasks.c.waiting_on - countdown)
        )
    frontier = list(ended)
    while frontier:
        frontier = await _cancel_dependents(conn, frontier, now)


async def _cancel_dependents(conn: AsyncConnection, ended: list[str], now: float) -> list[str]:
    """Cancel the live dependents of ``ended``; returns those that have dependents too."""
    gone = _each("gone").bindparams(gone=json.dumps(ended))
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
    statement = (
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
    return [str(i) for i, n in (await conn.execute(statement)).all() if n]

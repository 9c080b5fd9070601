"""SQL expressions shared by the store's statements.

JSON editing is spelled with SQLite's JSON1 functions; a PostgreSQL backend replaces the
functions here (``jsonb_set``, ``||``, ``greatest``) and nothing else.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from worker.schema import tasks
from worker.states import TaskState


def state_in(*states: TaskState) -> ColumnElement[bool]:
    """``state IN ('a', 'b')`` with the states inlined, so SQLite can use the partial indexes."""
    if len(states) == 1:
        return tasks.c.state == state_literal(states[0])
    return tasks.c.state.in_([state_literal(s) for s in states])


def state_literal(state: TaskState) -> ColumnElement[Any]:
    return sa.literal_column(f"'{state.value}'")


def all_null(*columns: ColumnElement[Any]) -> ColumnElement[bool]:
    """Whether every one of ``columns`` is NULL, as ``coalesce(a, b, ...) IS NULL``.

    Not ``a IS NULL AND b IS NULL``: SQLite from 3.38 (3.40.1 here) answers ``column IS
    NULL`` wrongly, false for a NULL, in an UPDATE's RETURNING on a table with NOT NULL
    columns (an optimisation consults the wrong column's constraint); the claim's fast path
    depends on this, and a test pins that plain tasks take it.
    """
    if len(columns) == 1:
        return sa.func.coalesce(columns[0], None).is_(None)
    return sa.func.coalesce(*columns).is_(None)


def append_error(error: ColumnElement[Any], now: Any, *, expired: bool) -> ColumnElement[Any]:
    """``errors`` with one more :class:`~worker.models.AttemptError` entry appended."""
    entry = sa.func.json_object(
        "attempt",
        tasks.c.attempt_count,
        "error",
        error,
        "at",
        now,
        "expired",
        sa.func.json("true" if expired else "false"),
    )
    return sa.func.json_insert(tasks.c.errors, "$[#]", entry)


def greatest(*values: Any) -> ColumnElement[Any]:
    return sa.func.max(*values)


def lease_pairs(name: str) -> sa.Subquery:
    """``(SELECT id, lease FROM json_each(:name)) AS a`` for a JSON list of [id, lease] pairs."""
    rows = sa.func.json_each(sa.bindparam(name)).table_valued("value")
    return sa.select(
        sa.func.json_extract(rows.c.value, "$[0]").label("id"),
        sa.func.json_extract(rows.c.value, "$[1]").label("lease"),
    ).subquery("a")


def under_leases(name: str) -> ColumnElement[bool]:
    """Processing tasks held by the leases in ``:name``, a JSON list of [id, lease] pairs
    (the UPDATE reads them ``FROM`` :func:`lease_pairs`)."""
    claims = lease_pairs(name)
    return sa.and_(
        tasks.c.id == claims.c.id,
        tasks.c.lease_id == claims.c.lease,
        state_in(TaskState.PROCESSING),
    )


def lease_length(seconds: float | None, default_s: float) -> Any:
    """A lease's length: ``seconds`` when given, else the task's own visibility timeout or
    ``default_s``."""
    if seconds is not None:
        return seconds
    return sa.func.coalesce(tasks.c.visibility_timeout, default_s)

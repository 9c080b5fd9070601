"""A :class:`~worker.core.selection.TaskFilter` as SQL: the conditions a list page, a count
and a bulk action share, in the portable vocabulary (:mod:`worker.storage.sql`).

Which index serves each filter (a page walks ``ORDER BY id`` and stops when full):

- ``state`` other than completed: that state's partial index (``ix_tasks_claim``,
  ``ix_tasks_lease_expiry``, ``ix_tasks_retryable``, ``ix_tasks_discarded``,
  ``ix_tasks_cancelled``), the state inlined as a constant so the planner can use it, and
  the rows it holds sorted by id (:func:`order`); completed: the primary key, filtered.
- ``queue``: ``ix_tasks_queue`` (or, with ``state`` discarded or cancelled, that state's
  partial index on ``queue``).
- ``kind``, ``name``, ``error``, ``created_after``/``created_before``: no index of their
  own; they filter the rows the walk above reads, so a page costs about as many rows as it
  takes to find a page's worth of matches.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from worker.core.selection import TaskFilter
from worker.core.states import TaskState
from worker.storage.schema import tasks
from worker.storage.sql import has_kind, state_in


def conditions(chosen: TaskFilter) -> list[ColumnElement[bool]]:
    """The ``WHERE`` conditions of ``chosen`` (none: every task)."""
    where: list[ColumnElement[bool]] = []
    if chosen.state is not None:
        where.append(state_in(chosen.state))
    if chosen.queue is not None:
        where.append(tasks.c.queue == chosen.queue)
    if chosen.kind is not None:
        where.append(has_kind(tasks.c.task_items, chosen.kind))
    if chosen.name is not None:
        where.append(tasks.c.name == chosen.name)
    if chosen.error is not None:
        # lower() on both sides: SQLite's LIKE ignores ASCII case, PostgreSQL's does not.
        where.append(
            sa.func.lower(tasks.c.last_error).contains(chosen.error.lower(), autoescape=True)
        )
    if chosen.created_after is not None:
        where.append(tasks.c.created_at >= chosen.created_after)
    if chosen.created_before is not None:
        where.append(tasks.c.created_at < chosen.created_before)
    return where


def order(chosen: TaskFilter) -> ColumnElement[Any]:
    """What a page sorts by: the id; with a ``state`` other than completed, the id as an
    expression (``id || ''``, the same order) that no index provides.

    The tasks of such a state are few beside the completed ones, and often the newest: a
    planner that assumes them spread evenly walks the primary key in id order to find a
    page of them, reading the whole table before it reaches them (PostgreSQL does, and
    with a generic plan always). Sorting by an expression leaves it one good plan: read the
    state's partial index, sort what it holds, keep a page. A backlog of a million pending
    tasks makes each page sort them all (about a second); the primary key walk would be
    quick then, but nothing portable tells the planner which case it is in.
    """
    if chosen.state is None or chosen.state is TaskState.COMPLETED:
        return tasks.c.id
    return tasks.c.id.op("||")(sa.literal_column("''"))


def page_of_ids(chosen: TaskFilter, *, after_id: str | None, limit: int) -> sa.Select[Any]:
    """The ids of the next ``limit`` tasks ``chosen`` matches after ``after_id``, in id order.

    Sorted by the primary key itself (not :func:`order`): a bulk action reads batch after
    batch, and the walk of the key from the last batch's id reads the table once in all,
    where sorting what a state's index holds at every batch would cost the square of it."""
    query = sa.select(tasks.c.id).where(*conditions(chosen)).order_by(tasks.c.id).limit(limit)
    if after_id is not None:
        query = query.where(tasks.c.id > after_id)
    return query


def count(chosen: TaskFilter) -> sa.Select[Any]:
    return sa.select(sa.func.count()).select_from(tasks).where(*conditions(chosen))

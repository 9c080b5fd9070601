"""A :class:`~worker.core.selection.TaskFilter` as SQL: the conditions a list page, a count
and a bulk action share, in the portable vocabulary (:mod:`worker.storage.sql`).

Which index serves each filter (a page walks ``ORDER BY id`` and stops when full):

- ``state`` pending: the claim's index, in its own order (:func:`claim_order`), a page
  its first entries from the cursor's place (on SQLite the queue compared as ``+queue``,
  so that its planner cannot take the index of pending tasks by queue and sort them all;
  PostgreSQL's filters the claim index by queue as it walks it).
- ``state`` discarded or cancelled: that state's partial index on ``id``
  (``ix_tasks_discarded_id``, ``ix_tasks_cancelled_id``), or with ``queue`` the one on
  ``(queue, id)`` (``ix_tasks_discarded``, ``ix_tasks_cancelled``), in its order from the
  cursor, the state inlined as a constant so the planner can use it: a page is its next
  entries, however many tasks the state keeps.
- processing or retryable: that state's partial index (``ix_tasks_lease_expiry``,
  ``ix_tasks_retryable``; both states stay as small as the work in flight) and the rows it
  holds sorted by id (:func:`order`); completed: the primary key, filtered.
- ``queue``: ``ix_tasks_queue`` (or, with ``state`` discarded or cancelled, as above).
- ``kind``, ``name``, ``error``, ``created_after``/``created_before``: no index of their
  own; they filter the rows the walk above reads, so a page costs about as many rows as it
  takes to find a page's worth of matches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from worker.core.selection import TaskFilter
from worker.core.states import TaskState
from worker.storage.schema import tasks
from worker.storage.sql import has_kind, not_indexed, state_in


def conditions(chosen: TaskFilter, *, by_index: bool = True) -> list[ColumnElement[bool]]:
    """The ``WHERE`` conditions of ``chosen`` (none: every task). ``by_index=False``: the
    queue is compared so that SQLite cannot look it up in an index (:func:`not_indexed`),
    and takes the one the order needs."""
    where: list[ColumnElement[bool]] = []
    if chosen.state is not None:
        where.append(state_in(chosen.state))
    if chosen.queue is not None:
        queue = tasks.c.queue if by_index else not_indexed(tasks.c.queue)
        where.append(queue == chosen.queue)
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


#: The states with a partial index on ``id``: their pages walk it in order.
_BY_ID = frozenset({TaskState.DISCARDED, TaskState.CANCELLED})


def order(chosen: TaskFilter) -> ColumnElement[Any]:
    """What a page sorts by when not in :func:`claim_order`: the id; with ``state``
    processing or retryable, the id as an expression (``id || ''``, the same order) that no
    index provides.

    The tasks of those two states are few beside the completed ones, and often the newest:
    a planner that assumes them spread evenly walks the primary key in id order to find a
    page of them, reading the whole table before it reaches them (PostgreSQL does, and with
    a generic plan always). Sorting by an expression leaves it one good plan: read the
    state's partial index, sort what it holds, keep a page. Discarded and cancelled tasks,
    which stay until a purge and may number millions, have a partial index on the id itself
    (``ix_tasks_discarded_id``): its order is the page's, and no plan beats reading its
    next entries.
    """
    if chosen.state is None or chosen.state is TaskState.COMPLETED or chosen.state in _BY_ID:
        return tasks.c.id
    return tasks.c.id.op("||")(sa.literal_column("''"))


def list_page(
    chosen: TaskFilter,
    *,
    after_id: str | None,
    limit: int,
    columns: Sequence[Any],
    after_priority: int | None = None,
) -> sa.Select[Any]:
    """``columns`` of the next ``limit`` tasks ``chosen`` matches after ``after_id`` (a list
    page): pending tasks in the order workers claim them (:func:`claim_order`), after the
    place ``after_id`` had with ``after_priority`` (required with ``after_id`` then), every
    other selection in id order.

    The page's ids are found first and only their rows are read, so a sort never carries
    whole rows.
    """
    if chosen.state is TaskState.PENDING:
        ranks = claim_order()
        # The claim index, walked in its order from the cursor: the queue must not tempt
        # the planner onto the index of pending tasks by queue (it would sort them all).
        where = conditions(chosen, by_index=False)
        ids = sa.select(tasks.c.id).where(*where).order_by(*ranks).limit(limit)
        if after_id is not None:
            if after_priority is None:
                raise ValueError("a page of pending tasks after a task needs its priority")
            ids = ids.where(*_after_in_claim_order(after_id, after_priority))
    else:
        ranks = [tasks.c.id]
        ids = sa.select(tasks.c.id).where(*conditions(chosen)).order_by(order(chosen))
        ids = ids.limit(limit)
        if after_id is not None:
            ids = ids.where(tasks.c.id > after_id)
    return sa.select(*columns).where(tasks.c.id.in_(ids.scalar_subquery())).order_by(*ranks)


def claim_order() -> list[ColumnElement[Any]]:
    """The order claims take pending tasks in: higher priority first, then older (id).

    It is the order of the claim's own index (``ix_tasks_claim``), so a page of pending
    tasks is its first entries, read from the index alone, however long the backlog: no
    sort of the state's tasks, and no walk of the table past finished tasks to find them.
    """
    return [tasks.c.priority.desc(), tasks.c.id]


def _after_in_claim_order(after_id: str, priority: int) -> list[ColumnElement[bool]]:
    """Behind ``(priority, after_id)`` in :func:`claim_order`: the first condition bounds
    the walk of the claim index (it starts at ``priority``, not at its first entry), the
    second takes what follows the id there."""
    return [
        tasks.c.priority <= priority,
        sa.or_(tasks.c.priority < priority, tasks.c.id > after_id),
    ]


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

"""Discarded and cancelled tasks in id order, for their list pages.

The two states whose tasks stay until a purge get their pages from an index in the page's
order, where each page used to sort every task of the state (about a second a page at a
million): ``ix_tasks_discarded`` and ``ix_tasks_cancelled`` go from ``(queue)`` to
``(queue, id)`` (a page of one queue; counts by queue read it as before), and
``ix_tasks_discarded_id`` and ``ix_tasks_cancelled_id`` on ``(id)`` serve a page of every
queue. All four are partial, written only when a task enters or leaves the state.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_STATES = ("discarded", "cancelled")


def _by_queue(state: str, columns: list[str]) -> None:
    where = sa.text(f"state = '{state}'")
    op.drop_index(f"ix_tasks_{state}", "tasks")
    op.create_index(
        f"ix_tasks_{state}", "tasks", columns, sqlite_where=where, postgresql_where=where
    )


def upgrade() -> None:
    for state in _STATES:
        where = sa.text(f"state = '{state}'")
        _by_queue(state, ["queue", "id"])
        op.create_index(
            f"ix_tasks_{state}_id", "tasks", ["id"], sqlite_where=where, postgresql_where=where
        )


def downgrade() -> None:
    for state in _STATES:
        op.drop_index(f"ix_tasks_{state}_id", "tasks")
        _by_queue(state, ["queue"])

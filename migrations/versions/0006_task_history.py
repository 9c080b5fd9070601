"""Persisted history for the dashboard's charts, and pending tasks by queue and age.

``task_history``: one row per queue, minute (``floor(now / 60)``) and outcome of an
acknowledgement (completed, retryable, discarded), with the count, the sum of processing
times and the count in each of 21 fixed log-scale buckets (``b0`` up to 1 ms, doubling;
``b20`` open-ended), upserted by the acknowledgement's transaction. ``purge`` leaves it alone.

``ix_tasks_pending_created``: ``(queue, created_at)`` of pending tasks, so each queue's oldest
pending task is the first entry of its range (``queue_figures``).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_PENDING = "state = 'pending'"
_BUCKETS = 21


def upgrade() -> None:
    op.create_table(
        "task_history",
        sa.Column("queue", sa.String(64), primary_key=True),
        sa.Column("minute", sa.Integer, primary_key=True),
        sa.Column("outcome", sa.String(16), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
        *(
            sa.Column(f"b{i}", sa.Integer, nullable=False, server_default="0")
            for i in range(_BUCKETS)
        ),
    )
    op.create_index("ix_task_history_minute", "task_history", ["minute"])
    op.create_index(
        "ix_tasks_pending_created",
        "tasks",
        ["queue", "created_at"],
        sqlite_where=sa.text(_PENDING),
        postgresql_where=sa.text(_PENDING),
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_pending_created", "tasks")
    op.drop_index("ix_task_history_minute", "task_history")
    op.drop_table("task_history")

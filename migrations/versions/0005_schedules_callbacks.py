"""Schedules (periodic tasks) and callbacks by name (``on_success`` / ``on_failure``).

``schedules``: one row per schedule, upserted by name; ``next_run_at`` is the tick due next,
which the worker that enqueues a tick advances in the same transaction, compare-and-set on
its stored value, so each tick is enqueued once however many workers run.

``tasks.on_success`` / ``tasks.on_failure``: the callables a task names. ``task_callbacks``:
one row per ending of such a task (made by a scan of finished tasks, as webhook deliveries
are), with its attempts, backoff and last error; ``callback_scan`` holds how far that scan
has gone (tasks that ended before this revision have no callbacks: it starts after them).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_PENDING = "state = 'pending'"
_CALLBACK_TASKS = "finished_at IS NOT NULL AND (on_success IS NOT NULL OR on_failure IS NOT NULL)"


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("on_success", sa.String(300), nullable=True))
        batch.add_column(sa.Column("on_failure", sa.String(300), nullable=True))
    op.create_index(
        "ix_tasks_callbacks",
        "tasks",
        ["finished_at"],
        sqlite_where=sa.text(_CALLBACK_TASKS),
        postgresql_where=sa.text(_CALLBACK_TASKS),
    )
    op.create_table(
        "schedules",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("cron", sa.String(200), nullable=True),
        sa.Column("interval_s", sa.Float, nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("request", sa.JSON, nullable=False),
        sa.Column("options", sa.JSON, nullable=False),
        sa.Column("catch_up", sa.String(16), nullable=False),
        sa.Column("max_catch_up", sa.Integer, nullable=False),
        sa.Column("next_run_at", sa.Float, nullable=False),
        sa.Column("last_tick_at", sa.Float, nullable=True),
        sa.Column("last_task_id", sa.String(26), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_schedules_next_run", "schedules", ["next_run_at"])
    op.create_table(
        "task_callbacks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("task_id", sa.String(26), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("target", sa.String(300), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("lease_id", sa.String(64), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("done_at", sa.Float, nullable=True),
        sa.Column("finished_at", sa.Float, nullable=False),
        sa.Column("ending", sa.Integer, nullable=False, server_default="1"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.UniqueConstraint("task_id", "finished_at", name="uq_task_callbacks_ending"),
    )
    op.create_index(
        "ix_task_callbacks_due",
        "task_callbacks",
        ["next_attempt_at"],
        sqlite_where=sa.text(_PENDING),
        postgresql_where=sa.text(_PENDING),
    )
    op.create_table(
        "callback_scan",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("scanned_to_at", sa.Float, nullable=False),
    )
    op.execute(
        "INSERT INTO callback_scan (id, scanned_to_at) "
        "SELECT 1, COALESCE(MAX(finished_at), 0) FROM tasks"
    )


def downgrade() -> None:
    op.drop_table("callback_scan")
    op.drop_index("ix_task_callbacks_due", "task_callbacks")
    op.drop_table("task_callbacks")
    op.drop_index("ix_schedules_next_run", "schedules")
    op.drop_table("schedules")
    op.drop_index("ix_tasks_callbacks", "tasks")
    # SQLite rebuilds the table to drop its columns, and the rebuild would make the claim
    # index ascending: it is dropped first and made again after, as it was.
    op.drop_index("ix_tasks_claim", "tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("on_failure")
        batch.drop_column("on_success")
    op.create_index(
        "ix_tasks_claim",
        "tasks",
        [
            sa.text("priority DESC"),
            "id",
            "schedule_at",
            "queue",
            "held",
            "waiting_on",
            "memory_bytes",
            "cpu_share",
            "needs_gpu",
        ],
        sqlite_where=sa.text(_PENDING),
        postgresql_where=sa.text(_PENDING),
    )

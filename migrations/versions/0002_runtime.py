"""The runtime: progress, checkpoints, cancellation, timeouts, retry policies, holds,
dependencies, paused queues and the worker registry.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_PENDING = "state = 'pending'"


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("progress", sa.JSON, nullable=True))
        batch.add_column(sa.Column("checkpoint", sa.JSON, nullable=True))
        batch.add_column(sa.Column("cancel_requested_at", sa.Float, nullable=True))
        batch.add_column(sa.Column("timeout_s", sa.Float, nullable=True))
        batch.add_column(sa.Column("retry_policy", sa.JSON, nullable=True))
        batch.add_column(sa.Column("held", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("waiting_on", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("dependents", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("depends_on", sa.JSON, nullable=True))
        batch.add_column(
            sa.Column("memory_bytes", sa.BigInteger, nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("cpu_share", sa.Float, nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("needs_gpu", sa.Boolean, nullable=False, server_default=sa.false())
        )
    op.drop_index("ix_tasks_claim", "tasks")
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
    op.create_index(
        "ix_tasks_finished",
        "tasks",
        ["finished_at"],
        sqlite_where=sa.text("finished_at IS NOT NULL"),
        postgresql_where=sa.text("finished_at IS NOT NULL"),
    )
    op.create_table(
        "paused_queues",
        sa.Column("queue", sa.String(64), primary_key=True),
        sa.Column("paused_at", sa.Float, nullable=False),
    )
    op.create_table(
        "task_dependencies",
        sa.Column("task_id", sa.String(26), primary_key=True),
        sa.Column("depends_on", sa.String(26), primary_key=True),
    )
    op.create_index("ix_task_dependencies_depends_on", "task_dependencies", ["depends_on"])
    op.create_table(
        "workers",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("queues", sa.JSON, nullable=True),
        sa.Column("concurrency", sa.Integer, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("heartbeat_at", sa.Float, nullable=False),
        sa.Column("stopped_at", sa.Float, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("workers")
    op.drop_table("task_dependencies")
    op.drop_table("paused_queues")
    op.drop_index("ix_tasks_finished", "tasks")
    op.drop_index("ix_tasks_claim", "tasks")
    with op.batch_alter_table("tasks") as batch:
        for column in (
            "needs_gpu", "cpu_share", "memory_bytes", "depends_on", "dependents",
            "waiting_on", "held", "retry_policy", "timeout_s", "cancel_requested_at",
            "checkpoint", "progress",
        ):  # fmt: skip
            batch.drop_column(column)
    op.create_index(
        "ix_tasks_claim",
        "tasks",
        [sa.text("priority DESC"), "id", "schedule_at", "queue"],
        sqlite_where=sa.text(_PENDING),
        postgresql_where=sa.text(_PENDING),
    )

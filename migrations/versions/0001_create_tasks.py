"""Create the tasks table and its indexes.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

#: The attempts' errors: JSON (``json``, text kept as written, on PostgreSQL) like every JSON
#: column, but ``jsonb`` on PostgreSQL, where the sweep and acknowledgements append to it.
ERRORS = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_LIVE = "state IN ('pending', 'processing', 'retryable')"


def _partial(where: str) -> dict[str, Any]:
    return {"sqlite_where": sa.text(where), "postgresql_where": sa.text(where)}


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(26), primary_key=True),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("schedule_at", sa.Float, nullable=False),
        sa.Column("attempt_count", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=True),
        sa.Column("visibility_timeout", sa.Float, nullable=True),
        sa.Column("expired_count", sa.Integer, nullable=False),
        sa.Column("retry_delay", sa.Float, nullable=True),
        sa.Column("lease_id", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", sa.Float, nullable=True),
        sa.Column("worker_id", sa.String(128), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("errors", ERRORS, nullable=False),
        sa.Column("items", sa.JSON, nullable=False),
        sa.Column("outcomes", sa.JSON, nullable=True),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("finished_at", sa.Float, nullable=True),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Every task's row is updated two or three times in a few seconds (claim, then its
        # outcome), so dead row versions pile up fast: vacuum at 1 % of the table rather
        # than PostgreSQL's 20 %, and leave a tenth of each page free so that a row's next
        # version usually fits on the same page (docs/postgres.md).
        op.execute(
            "ALTER TABLE tasks SET (fillfactor = 90, autovacuum_vacuum_scale_factor = 0.01, "
            "autovacuum_analyze_scale_factor = 0.02)"
        )
    op.create_index(
        "ix_tasks_claim",
        "tasks",
        [sa.text("priority DESC"), "id", "schedule_at", "queue"],
        **_partial("state = 'pending'"),
    )
    op.create_index(
        "ix_tasks_lease_expiry", "tasks", ["lease_expires_at"], **_partial("state = 'processing'")
    )
    op.create_index(
        "ix_tasks_retryable", "tasks", ["updated_at"], **_partial("state = 'retryable'")
    )
    op.create_index(
        "ix_tasks_idempotency_key",
        "tasks",
        ["idempotency_key"],
        unique=True,
        **_partial(f"idempotency_key IS NOT NULL AND {_LIVE}"),
    )
    op.create_index("ix_tasks_queue", "tasks", ["queue"])
    for state in ("discarded", "cancelled"):
        op.create_index(f"ix_tasks_{state}", "tasks", ["queue"], **_partial(f"state = '{state}'"))


def downgrade() -> None:
    op.drop_table("tasks")

"""The tables, declared once. Alembic's revisions create them; a test checks they agree."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

#: States the idempotency key is unique among (mirrors ``worker.states`` non-terminal states).
_LIVE = "state IN ('pending', 'processing', 'retryable')"

tasks = sa.Table(
    "tasks",
    metadata,
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
    sa.Column("errors", sa.JSON, nullable=False),
    sa.Column("items", sa.JSON, nullable=False, key="task_items"),
    # Per-item outcomes, aligned with items: [{"result": ..., "error": ...}, ...] or NULL.
    sa.Column("outcomes", sa.JSON, nullable=True),
    sa.Column("name", sa.String(200), nullable=True),
    sa.Column("metadata", sa.JSON, nullable=False, key="task_metadata"),
    sa.Column("idempotency_key", sa.String(200), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("finished_at", sa.Float, nullable=True),
)

# The claim walks this index in its ORDER BY (priority DESC, id) and filters on the covered
# columns, so a claim touches only pending rows and reads no table page until it updates.
sa.Index(
    "ix_tasks_claim",
    tasks.c.priority.desc(),
    tasks.c.id,
    tasks.c.schedule_at,
    tasks.c.queue,
    sqlite_where=sa.text("state = 'pending'"),
    postgresql_where=sa.text("state = 'pending'"),
)
sa.Index(
    "ix_tasks_lease_expiry",
    tasks.c.lease_expires_at,
    sqlite_where=sa.text("state = 'processing'"),
    postgresql_where=sa.text("state = 'processing'"),
)
sa.Index(
    "ix_tasks_retryable",
    tasks.c.updated_at,
    sqlite_where=sa.text("state = 'retryable'"),
    postgresql_where=sa.text("state = 'retryable'"),
)
sa.Index(
    "ix_tasks_idempotency_key",
    tasks.c.idempotency_key,
    unique=True,
    sqlite_where=sa.text(f"idempotency_key IS NOT NULL AND {_LIVE}"),
    postgresql_where=sa.text(f"idempotency_key IS NOT NULL AND {_LIVE}"),
)
# No index leads with ``state`` over the whole table: every transition would move an entry
# in it, and it doubles the cost of a claim. Statistics count the states that stay small
# through the partial indexes above and below, and completed tasks by subtraction.
sa.Index("ix_tasks_queue", tasks.c.queue)
for _state in ("discarded", "cancelled"):
    sa.Index(
        f"ix_tasks_{_state}",
        tasks.c.queue,
        sqlite_where=sa.text(f"state = '{_state}'"),
        postgresql_where=sa.text(f"state = '{_state}'"),
    )

"""Webhooks: one delivery per item for each time its task ends, not once per item ever.

A resumed task (DISCARDED -> PENDING) that ends again has a new outcome to deliver. A delivery
now names the ending it reports: ``finished_at`` (the task's, which identifies the ending) and
``ending`` (1 for the first delivered, then 2, ...); rows are unique per item and ending.

Existing rows were each made for one ending of their task. A pending row, and a row made
after the task's current ending, report that ending: they take the task's ``finished_at``,
so the scan recognises them and makes no second delivery. A row from an earlier ending (the
task was resumed since) or of a task no longer there takes its own ``created_at``, which is
after the ending it reported and before any later one. Every existing row is ending 1.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_PENDING = "state = 'pending'"


def upgrade() -> None:
    # The table is rebuilt below; its partial index is dropped first and made again after,
    # so that its predicate does not depend on how the rebuild reflects it.
    op.drop_index("ix_webhook_deliveries_due", "webhook_deliveries")
    op.add_column("webhook_deliveries", sa.Column("finished_at", sa.Float, nullable=True))
    op.add_column(
        "webhook_deliveries",
        sa.Column("ending", sa.Integer, nullable=False, server_default="1"),
    )
    op.execute(
        "UPDATE webhook_deliveries SET finished_at = COALESCE("
        " (SELECT tasks.finished_at FROM tasks WHERE tasks.id = webhook_deliveries.task_id"
        "  AND tasks.finished_at IS NOT NULL AND (webhook_deliveries.state = 'pending'"
        "  OR tasks.finished_at <= webhook_deliveries.created_at)),"
        " webhook_deliveries.created_at)"
    )
    with op.batch_alter_table("webhook_deliveries", recreate="always") as batch:
        batch.alter_column("finished_at", existing_type=sa.Float, nullable=False)
        batch.drop_constraint("uq_webhook_deliveries_item", type_="unique")
        batch.create_unique_constraint(
            "uq_webhook_deliveries_ending", ["task_id", "item_index", "finished_at"]
        )
    _create_due_index()


def downgrade() -> None:
    # One row per item again: the latest ending's.
    op.execute(
        "DELETE FROM webhook_deliveries WHERE ending < ("
        " SELECT max(later.ending) FROM webhook_deliveries AS later"
        " WHERE later.task_id = webhook_deliveries.task_id"
        " AND later.item_index = webhook_deliveries.item_index)"
    )
    op.drop_index("ix_webhook_deliveries_due", "webhook_deliveries")
    with op.batch_alter_table("webhook_deliveries", recreate="always") as batch:
        batch.drop_constraint("uq_webhook_deliveries_ending", type_="unique")
        batch.create_unique_constraint("uq_webhook_deliveries_item", ["task_id", "item_index"])
        batch.drop_column("ending")
        batch.drop_column("finished_at")
    _create_due_index()


def _create_due_index() -> None:
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        sqlite_where=sa.text(_PENDING),
        postgresql_where=sa.text(_PENDING),
    )

"""Webhooks: delivery state per task item, and how far finished tasks have been scanned.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_PENDING = "state = 'pending'"


def upgrade() -> None:
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("task_id", sa.String(26), nullable=False),
        sa.Column("item_index", sa.Integer, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("lease_id", sa.String(64), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("last_status", sa.Integer, nullable=True),
        sa.Column("delivered_at", sa.Float, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.UniqueConstraint("task_id", "item_index", name="uq_webhook_deliveries_item"),
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        sqlite_where=sa.text(_PENDING),
        postgresql_where=sa.text(_PENDING),
    )
    op.create_table(
        "webhook_scan",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("scanned_to_at", sa.Float, nullable=False),
    )
    # Tasks that finished before webhooks existed are not delivered: the scan starts after them.
    op.execute(
        "INSERT INTO webhook_scan (id, scanned_to_at) "
        "SELECT 1, COALESCE(MAX(finished_at), 0) FROM tasks"
    )


def downgrade() -> None:
    op.drop_table("webhook_scan")
    op.drop_index("ix_webhook_deliveries_due", "webhook_deliveries")
    op.drop_table("webhook_deliveries")

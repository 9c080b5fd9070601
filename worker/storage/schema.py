"""The tables, declared once. Alembic's revisions create them; a test checks they agree."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()

#: The attempts' errors: JSON (``json``, text kept as written, on PostgreSQL) like every JSON
#: column, but ``jsonb`` on PostgreSQL, where the sweep and acknowledgements append to it.
ERRORS = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


#: States the idempotency key is unique among (mirrors ``worker.core.states`` non-terminal states).
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
    sa.Column("errors", ERRORS, nullable=False),
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
    # Revision 0002: the runtime's columns.
    sa.Column("progress", sa.JSON, nullable=True),
    sa.Column("checkpoint", sa.JSON, nullable=True),
    sa.Column("cancel_requested_at", sa.Float, nullable=True),
    sa.Column("timeout_s", sa.Float, nullable=True),
    sa.Column("retry_policy", sa.JSON, nullable=True),
    sa.Column("held", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("waiting_on", sa.Integer, nullable=False, server_default="0"),
    sa.Column("dependents", sa.Integer, nullable=False, server_default="0"),
    sa.Column("depends_on", sa.JSON, nullable=True),
    # What the task needs of its worker; a worker claims only what fits in what it has free.
    sa.Column("memory_bytes", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("cpu_share", sa.Float, nullable=False, server_default="0"),
    sa.Column("needs_gpu", sa.Boolean, nullable=False, server_default=sa.false()),
    # Revision 0005: callables ("package.module:function") run after the task completes
    # or is discarded (worker.runtime.callbacks).
    sa.Column("on_success", sa.String(300), nullable=True),
    sa.Column("on_failure", sa.String(300), nullable=True),
)

#: A paused queue has a row here; nothing is claimed from it until the row is gone.
paused_queues = sa.Table(
    "paused_queues",
    metadata,
    sa.Column("queue", sa.String(64), primary_key=True),
    sa.Column("paused_at", sa.Float, nullable=False),
)

#: ``task_id`` is not claimed until ``depends_on`` has completed.
task_dependencies = sa.Table(
    "task_dependencies",
    metadata,
    sa.Column("task_id", sa.String(26), primary_key=True),
    sa.Column("depends_on", sa.String(26), primary_key=True),
)
sa.Index("ix_task_dependencies_depends_on", task_dependencies.c.depends_on)

#: Live workers register here and heartbeat; statistics count the recent ones.
workers = sa.Table(
    "workers",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("hostname", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("queues", sa.JSON, nullable=True),
    sa.Column("concurrency", sa.Integer, nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
    sa.Column("stopped_at", sa.Float, nullable=True),
)

# The claim walks this index in its ORDER BY (priority DESC, id) and filters on the covered
# columns, so a claim touches only pending rows and reads no table page until it updates.
sa.Index(
    "ix_tasks_claim",
    tasks.c.priority.desc(),
    tasks.c.id,
    tasks.c.schedule_at,
    tasks.c.queue,
    tasks.c.held,
    tasks.c.waiting_on,
    tasks.c.memory_bytes,
    tasks.c.cpu_share,
    tasks.c.needs_gpu,
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
# Statistics over a recent window, and purge, find finished tasks by time.
sa.Index(
    "ix_tasks_finished",
    tasks.c.finished_at,
    sqlite_where=sa.text("finished_at IS NOT NULL"),
    postgresql_where=sa.text("finished_at IS NOT NULL"),
)
# Revision 0005: the few tasks that name a callback, by finished_at, for the callback scan
# (worker.storage.callbacks), which then reads no other task's row.
CALLBACK_TASKS = "finished_at IS NOT NULL AND (on_success IS NOT NULL OR on_failure IS NOT NULL)"
sa.Index(
    "ix_tasks_callbacks",
    tasks.c.finished_at,
    sqlite_where=sa.text(CALLBACK_TASKS),
    postgresql_where=sa.text(CALLBACK_TASKS),
)
# No index leads with ``state`` over the whole table: every transition would move an entry
# in it, and it doubles the cost of a claim. Statistics count the states that stay small
# through the partial indexes above and below, and completed tasks by subtraction.
sa.Index("ix_tasks_queue", tasks.c.queue)
# The two states that keep what they hold (until a purge) have two each: by queue (for
# counts) and, since revision 0007, then by id, and by id alone, so that a page of them,
# of one queue or of all, is the next entries after its cursor however many the state
# keeps (worker.storage.selection).
for _state in ("discarded", "cancelled"):
    sa.Index(
        f"ix_tasks_{_state}",
        tasks.c.queue,
        tasks.c.id,
        sqlite_where=sa.text(f"state = '{_state}'"),
        postgresql_where=sa.text(f"state = '{_state}'"),
    )
    sa.Index(
        f"ix_tasks_{_state}_id",
        tasks.c.id,
        sqlite_where=sa.text(f"state = '{_state}'"),
        postgresql_where=sa.text(f"state = '{_state}'"),
    )

# Revision 0003: webhooks. One row per task item with a ``response_url``, created after the
# task ends (the hot path never writes here); ``next_attempt_at`` doubles as the lease expiry
# of a claimed delivery, so a delivery whose worker died becomes due again by itself.
# Revision 0004: one row per item for each ending of the task (a resumed task ends again):
# ``finished_at`` is the task's at the ending the row reports, ``ending`` counts them from 1.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
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
    sa.Column("finished_at", sa.Float, nullable=False),
    sa.Column("ending", sa.Integer, nullable=False, server_default="1"),
    sa.UniqueConstraint(
        "task_id", "item_index", "finished_at", name="uq_webhook_deliveries_ending"
    ),
)
sa.Index(
    "ix_webhook_deliveries_due",
    webhook_deliveries.c.next_attempt_at,
    sqlite_where=sa.text("state = 'pending'"),
    postgresql_where=sa.text("state = 'pending'"),
)

#: One row (id 1): tasks that finished at or before ``scanned_to_at`` have their deliveries.
webhook_scan = sa.Table(
    "webhook_scan",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("scanned_to_at", sa.Float, nullable=False),
)

# Revision 0005: schedules. One row per schedule, by name; ``next_run_at`` is the tick due
# next, advanced (compare-and-set on its stored value) in the transaction that enqueues it.
schedules = sa.Table(
    "schedules",
    metadata,
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
sa.Index("ix_schedules_next_run", schedules.c.next_run_at)

# Revision 0005: callbacks by name. One row per ending of a task that names a callback for
# it (``event`` success: it completed; failure: it was discarded), made by a scan of finished
# tasks as webhook deliveries are, and claimed, leased and retried the same way.
task_callbacks = sa.Table(
    "task_callbacks",
    metadata,
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
sa.Index(
    "ix_task_callbacks_due",
    task_callbacks.c.next_attempt_at,
    sqlite_where=sa.text("state = 'pending'"),
    postgresql_where=sa.text("state = 'pending'"),
)

#: One row (id 1): tasks that finished at or before ``scanned_to_at`` have their callbacks.
callback_scan = sa.Table(
    "callback_scan",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("scanned_to_at", sa.Float, nullable=False),
)

# Revision 0006: persisted history for the dashboard's charts. One row per queue, minute and
# outcome (the state an acknowledgement moved a task to: completed, retryable, discarded),
# upserted by the acknowledgement's own transaction (one statement per batch, grouped in
# Python); ``purge`` never touches it, the sweep drops rows older than two days. Processing
# times are counted into fixed log-scale buckets (:data:`HISTORY_BOUNDS`, ``b0`` ... the
# last one open-ended), from which p50/p95 are estimated.
#: The upper bounds (seconds) of the processing-time buckets: 1 ms doubling up to ~8.7 min.
HISTORY_BOUNDS: tuple[float, ...] = tuple(0.001 * 2**k for k in range(20))
HISTORY_BUCKETS = tuple(f"b{i}" for i in range(len(HISTORY_BOUNDS) + 1))
task_history = sa.Table(
    "task_history",
    metadata,
    sa.Column("queue", sa.String(64), primary_key=True),
    sa.Column("minute", sa.Integer, primary_key=True),
    sa.Column("outcome", sa.String(16), primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("seconds", sa.Float, nullable=False),
    *(sa.Column(name, sa.Integer, nullable=False, server_default="0") for name in HISTORY_BUCKETS),
)
sa.Index("ix_task_history_minute", task_history.c.minute)
# Revision 0006: each queue's oldest pending task is the first entry of its range here, so
# queue_figures reads one index entry per queue, not a row per pending task.
sa.Index(
    "ix_tasks_pending_created",
    tasks.c.queue,
    tasks.c.created_at,
    sqlite_where=sa.text("state = 'pending'"),
    postgresql_where=sa.text("state = 'pending'"),
)

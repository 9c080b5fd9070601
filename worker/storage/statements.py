"""The hot-path statements, built once with SQLAlchemy Core and compiled once per dialect.

Claims, acknowledgements and bulk inserts run thousands of times a second. Building and
compiling a statement, and processing every parameter and result column through SQLAlchemy's
types, costs more than SQLite spends executing it, so these statements are compiled here once
and executed with ``exec_driver_sql`` on the same connection and transaction. Their shape never
depends on the batch: a batch of acknowledgements travels as one JSON parameter that the
statement unpacks (``UPDATE ... FROM``, :mod:`worker.storage.sql`), so one compiled form serves
all. The claim's shape is the backend's own (:meth:`worker.storage.backend.Backend.claim`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.elements import ColumnElement

from worker.core.states import TaskState, sources, target
from worker.storage import history
from worker.storage.backend import Backend, BulkLoad, backend_for
from worker.storage.schema import tasks
from worker.storage.sql import (
    FieldType,
    all_null,
    append_error,
    json_equals,
    json_pairs,
    json_rows,
    state_in,
    text_as_stored,
)

#: What a claim returns: the columns it does not set itself, less those in
#: :data:`CLAIM_DEFAULTS`, then ``plain``: whether every one of those holds its default. The
#: rest (state, lease, worker, times) follow from the claim's own parameters, and
#: :func:`worker.storage.row_decode.task_from_claim` fills them in. Returning costs by the
#: column: with all 24 columns a claim's SQL took 13.6 us per task (raw sqlite3, median of
#: seven), with these 13 it takes 10.5.
CLAIM_COLUMNS = (
    "id", "queue", "priority", "schedule_at", "attempt_count", "max_attempts",
    "visibility_timeout", "items", "name", "metadata", "idempotency_key", "created_at",
)  # fmt: skip

#: Columns every task holds at these values (as stored) until it is retried, resumed or
#: reports progress, or unless it declares them (timeouts, policies, dependencies,
#: resources). A claim does not return them: a claimed row whose ``plain`` is false is read
#: back whole in the same transaction.
CLAIM_DEFAULTS: dict[str, Any] = {
    "expired_count": 0, "last_error": None, "errors": "[]", "outcomes": None,
    "progress": None, "checkpoint": None, "timeout_s": None, "retry_policy": None,
    "depends_on": None, "memory_bytes": 0, "cpu_share": 0.0, "needs_gpu": False,
    "on_success": None, "on_failure": None,
}  # fmt: skip

#: Columns a bulk insert sets, in table order (the compiled statement's parameter order);
#: the others keep their NULL defaults. The last ones, :data:`OPTIONAL_INSERT_COLUMNS`, only
#: some tasks set (their callbacks): a batch in which none does is inserted without them
#: (:data:`PLAIN_INSERT_COLUMNS`, two values fewer to bind per row).
INSERT_COLUMNS = (
    "id",
    "queue",
    "state",
    "priority",
    "schedule_at",
    "attempt_count",
    "max_attempts",
    "visibility_timeout",
    "expired_count",
    "errors",
    "items",
    "name",
    "metadata",
    "idempotency_key",
    "created_at",
    "updated_at",
    "timeout_s",
    "retry_policy",
    "held",
    "waiting_on",
    "depends_on",
    "memory_bytes",
    "cpu_share",
    "needs_gpu",
    "on_success",
    "on_failure",
)
OPTIONAL_INSERT_COLUMNS = ("on_success", "on_failure")
PLAIN_INSERT_COLUMNS = INSERT_COLUMNS[: -len(OPTIONAL_INSERT_COLUMNS)]
assert INSERT_COLUMNS[len(PLAIN_INSERT_COLUMNS) :] == OPTIONAL_INSERT_COLUMNS


#: What :func:`prepare` compiles.
Buildable = sa.Insert | sa.Update | sa.Delete | sa.Select[Any] | sa.TextualSelect | sa.TextClause


@dataclass(frozen=True, slots=True)
class Prepared:
    """A compiled statement: driver SQL and the order its parameters go in."""

    sql: str
    names: tuple[str, ...]
    defaults: Mapping[str, Any]

    def params(self, **values: Any) -> tuple[Any, ...]:
        merged = {**self.defaults, **values}
        return tuple(merged[name] for name in self.names)

    def params_many(
        self, rows: Sequence[Mapping[str, Any]] | Sequence[tuple[Any, ...]]
    ) -> Sequence[tuple[Any, ...]]:
        """:meth:`params` for each row of values. Rows that are tuples (all of them, then:
        a bulk insert's :class:`worker.storage.rows.InsertRow`) follow :attr:`names` and are taken
        as they are, in a list (SQLAlchemy's ``executemany`` takes no other sequence, such as
        the :class:`~worker.storage.rows.UniformRows` built as they are read)."""
        if rows and isinstance(rows[0], tuple):
            width = len(self.names)
            if len(rows[0]) != width:
                raise ValueError(f"rows of {width} values expected, got {len(rows[0])}")
            return rows if isinstance(rows, list) else list(rows)  # type: ignore[arg-type]
        return [self.params(**row) for row in rows]  # type: ignore[arg-type]


def prepare(statement: Buildable, dialect: Dialect) -> Prepared:
    compiled = statement.compile(dialect=dialect)
    names = tuple(compiled.positiontup or ())
    return Prepared(compiled.string, names, dict(compiled.params))


def _acks(**fields: FieldType) -> sa.Subquery:
    """``(SELECT <id>, <lease>, <fields> FROM <the JSON list :acks>) AS a``: each
    acknowledgement an array ``[id, lease, field, ...]``."""
    return json_rows("acks", id="text", lease="text", **fields)


def _plain_acks() -> sa.Subquery:
    """``(id, lease)`` rows of acks as one JSON object of ``{task id: lease}``, which SQLite
    reads without extracting each field."""
    return json_pairs("acks")


def _acknowledge(operation: str, acks: sa.Subquery, values: dict[str, Any]) -> sa.Update:
    values = {"state": target(operation).value, **values}
    return (
        sa.update(tasks)
        .where(
            tasks.c.id == acks.c.id,
            state_in(*sources(operation)),
            sa.or_(acks.c.lease.is_(None), tasks.c.lease_id == acks.c.lease),
        )
        .values(updated_at=sa.bindparam("now"), **values)
        # queue and started_at feed the history rows (worker.storage.history); the queue
        # as stored, so that a name that is not UTF-8 does not fail the acknowledgement.
        .returning(
            tasks.c.id,
            tasks.c.dependents,
            tasks.c.state,
            tasks.c.lease_id,
            text_as_stored(tasks.c.queue),
            tasks.c.started_at,
        )
    )


class Statements:
    """The hot-path statements of one dialect (see the module docstring)."""

    def __init__(self, dialect: Dialect, *, wake: bool = True) -> None:
        self.dialect = dialect
        self.backend = backend_for(dialect.name)
        locks = self.backend.key_locks()
        #: What locks a batch's idempotency keys before they are looked up, if anything.
        self.key_locks = None if locks is None else prepare(locks, dialect)
        queues = self.backend.queue_locks()
        #: What locks a batch's queues before their pending tasks are counted, if anything.
        self.queue_locks = None if queues is None else prepare(queues, dialect)
        #: ``(queue, count)`` of pending tasks, for the bound on them (QUEUE_MAX_PENDING).
        self.pending_by_queue = prepare(self.backend.pending_by_queue(), dialect)
        tasks_woken = self.backend.wake("tasks") if wake else None
        #: What an enqueue runs in its transaction to wake other processes' workers, if any.
        self.wake_tasks = None if tasks_woken is None else prepare(tasks_woken, dialect)
        self._built: dict[Callable[[], Buildable], Prepared] = {}
        self.insert = _insert(INSERT_COLUMNS, dialect)
        #: The insert of a batch in which no task sets :data:`OPTIONAL_INSERT_COLUMNS`.
        self.insert_plain = _insert(PLAIN_INSERT_COLUMNS, dialect)
        #: The backend's bulk-load path for the same rows (tuples), if it has one.
        self.bulk_load = self.backend.bulk_load(INSERT_COLUMNS)
        self.bulk_load_plain = self.backend.bulk_load(PLAIN_INSERT_COLUMNS)
        self.claim = prepare(_claim(self.backend, by_queue=False), dialect)
        self.claim_by_queue = prepare(_claim(self.backend, by_queue=True), dialect)
        self.any_due = prepare(self.backend.due(by_queue=False, limit=False), dialect)
        self.any_due_by_queue = prepare(self.backend.due(by_queue=True, limit=False), dialect)
        done = _acks(outcomes="json", progress="json")
        self.complete = prepare(
            _acknowledge(
                "complete",
                done,
                {
                    "finished_at": sa.bindparam("now"),
                    "lease_expires_at": None,
                    "retry_delay": None,
                    "outcomes": sa.func.coalesce(done.c.outcomes, tasks.c.outcomes),
                    "progress": sa.func.coalesce(done.c.progress, tasks.c.progress),
                },
            ),
            dialect,
        )
        self.complete_plain = prepare(
            _acknowledge(
                "complete",
                _plain_acks(),
                {"finished_at": sa.bindparam("now"), "lease_expires_at": None, "retry_delay": None},
            ),
            dialect,
        )
        self.retry = prepare(_fail("retry"), dialect)
        self.discard = prepare(_fail("discard"), dialect)
        #: The history upsert an acknowledgement batch runs (worker.storage.history).
        self.history = prepare(history.upsert(self.backend), dialect)

    def loader(self, width: int) -> BulkLoad | None:
        """The bulk load of rows ``width`` values wide (:data:`INSERT_COLUMNS` or
        :data:`PLAIN_INSERT_COLUMNS`), if the backend has one."""
        return self.bulk_load if width == len(INSERT_COLUMNS) else self.bulk_load_plain

    def of(self, build: Callable[[], Buildable]) -> Prepared:
        """The statement ``build()`` returns, compiled on first use (by builder function)."""
        prepared = self._built.get(build)
        if prepared is None:
            prepared = self._built[build] = prepare(build(), self.dialect)
        return prepared


def _insert(columns: Sequence[str], dialect: Dialect) -> Prepared:
    return prepare(
        sa.insert(tasks).values({c: sa.bindparam(c.name) for c in tasks.c if c.name in columns}),
        dialect,
    )


def _fail(operation: str) -> sa.Update:
    failed = _acks(error="text", delay="float", outcomes="json")
    values: dict[str, Any] = {
        "last_error": failed.c.error,
        "errors": append_error(failed.c.error, sa.bindparam("now"), expired=False),
        "lease_expires_at": None,
        "outcomes": sa.func.coalesce(failed.c.outcomes, tasks.c.outcomes),
    }
    if operation == "retry":
        # A failed run whose task was asked to stop is not retried: it ends cancelled.
        asked = tasks.c.cancel_requested_at.is_not(None)
        values["state"] = sa.case((asked, TaskState.CANCELLED.value), else_=target("retry").value)
        values["finished_at"] = sa.case((asked, sa.bindparam("now")), else_=None)
        values["retry_delay"] = failed.c.delay
    else:
        values["finished_at"] = sa.bindparam("now")
    return _acknowledge(operation, failed, values)


_BY_NAME = {column.name: column for column in tasks.c}


def _claim(backend: Backend, *, by_queue: bool) -> Any:
    """The one claim statement: the backend picks due rows (its own way) and marks them."""
    now: sa.BindParameter[float] = sa.bindparam("now", type_=sa.Float)
    values = {
        "state": target("claim").value,
        "attempt_count": tasks.c.attempt_count + 1,
        "lease_id": sa.bindparam("lease_prefix", type_=sa.String) + tasks.c.id,
        "lease_expires_at": now
        + sa.func.coalesce(tasks.c.visibility_timeout, sa.bindparam("default_vt", type_=sa.Float)),
        "worker_id": sa.bindparam("worker_id", type_=sa.String),
        "cancel_requested_at": None,  # a cancel request is for the run it was made during
        "finished_at": None,
        "started_at": now,
        "updated_at": now,
    }
    returning = [*(_BY_NAME[name] for name in CLAIM_COLUMNS), _plain().label("plain")]
    return backend.claim(by_queue=by_queue, values=values, returning=returning)


def _plain() -> ColumnElement[bool]:
    """Whether every column of :data:`CLAIM_DEFAULTS` holds its default (as stored: JSON
    columns compare as text; the constants are inlined, so the statement binds nothing new)."""
    nulls = [_BY_NAME[name] for name, default in CLAIM_DEFAULTS.items() if default is None]
    terms = [all_null(*nulls)]
    for name, default in CLAIM_DEFAULTS.items():
        column = _BY_NAME[name]
        if default is None:
            continue
        if isinstance(column.type, sa.JSON):
            terms.append(json_equals(column, default))
        elif isinstance(default, bool):
            terms.append(column == (sa.true() if default else sa.false()))
        else:
            terms.append(column == sa.literal_column(repr(default)))
    return sa.and_(*terms)

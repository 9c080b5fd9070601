"""What a storage backend declares and builds for itself: :class:`Backend`.

Most of the queue's SQL is written once (:mod:`worker.storage.sql`); a backend builds the few
statements whose shape is its own (the claim, the per-state counts, the position in line) and
declares its capabilities. :func:`backend_for` picks it by the SQLAlchemy dialect's name, which
the database URL's scheme chose.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from worker.core.states import TaskState

#: An INSERT with ``on_conflict_do_nothing`` and ``on_conflict_do_update`` (both dialects'
#: take the same arguments).
Insert = sqlite.Insert | postgresql.Insert


#: What a wake-up is about (see :meth:`Backend.wake`).
Wake = Literal["tasks", "cancels"]


class BulkLoad(Protocol):
    """Inserts rows into ``tasks`` on a connection (:meth:`Backend.bulk_load`); a failure
    raises as a statement's would (a duplicate id: ``IntegrityError``)."""

    def __call__(self, conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None: ...


class Listening(Protocol):
    """A running receiver of wake-ups (:meth:`Backend.listener`)."""

    def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do beyond the common ground.

    ``pushes_wakeups``: another process's enqueue reaches an idle worker without polling
    (PostgreSQL's notifications; SQLite workers watch the database file instead).
    ``single_writer``: one write transaction at a time for the whole database (SQLite),
    so a process's writers take turns rather than contend.
    ``many_machines``: workers on several machines may share the database.
    """

    pushes_wakeups: bool
    single_writer: bool
    many_machines: bool


class Backend(ABC):
    """The statements one backend shapes itself. Each returns a SQLAlchemy statement whose
    parameters are named as documented; callers compile it once per dialect."""

    name: str
    capabilities: Capabilities

    @abstractmethod
    def insert(self, table: sa.Table) -> Insert:
        """``INSERT`` with ``on_conflict_do_nothing``/``on_conflict_do_update`` (the
        dialect's own insert: both backends accept the same arguments)."""

    @abstractmethod
    def due(self, *, by_queue: bool, limit: bool) -> sa.Select[Any] | sa.TextualSelect:
        """Ids of claimable tasks in claim order (``LIMIT :size``), or with ``limit=False``
        at most one (whether there is any). Parameters: ``now``, ``memory``, ``cpu``,
        ``gpu`` and, ``by_queue``, ``queues`` (a JSON list)."""

    @abstractmethod
    def claim(self, *, by_queue: bool, values: dict[str, Any], returning: list[Any]) -> Any:
        """The one claim statement: mark the tasks :meth:`due` picks with ``values`` and
        return ``returning`` of each, atomically even with other machines claiming."""

    @abstractmethod
    def state_counts(self, *, by_queue: bool) -> sa.TextClause:
        """One row: the count of every task (``:queue``'s), then of each state in
        :data:`STATE_INDEXES` order."""

    @abstractmethod
    def queue_counts(self, state: TaskState) -> sa.TextClause:
        """Rows of ``(queue, count)``: the tasks in ``state`` (one of :data:`STATE_INDEXES`)
        per queue, counted through that state's partial index."""

    def queue_counts_above(self) -> sa.TextClause:
        """Rows of ``(queue, count, at_or_below)``: per queue, the tasks whose id is above
        ``:since``, and how many of those are at or below ``:mark``, read through the
        primary key (see :mod:`worker.storage.queue_totals`)."""
        return sa.text(
            "SELECT queue, count(*), sum(CASE WHEN id <= :mark THEN 1 ELSE 0 END) FROM tasks "
            "WHERE id > :since GROUP BY queue"
        )

    @abstractmethod
    def position(self) -> sa.TextClause:
        """How many claimable tasks of ``:queue`` come before (``:priority``, ``:id``)."""

    def wake(self, what: Wake) -> sa.TextClause | None:
        """A statement a writer runs in its transaction to wake other processes' workers at
        its commit: ``"tasks"``, work became claimable; ``"cancels"``, a running task was
        asked to stop (None: the backend cannot push wake-ups)."""
        return None

    def listener(self, url: str, on_wake: dict[Wake, Callable[[], None]]) -> Listening | None:
        """What receives :meth:`wake`'s wake-ups in this process, calling ``on_wake[what]()``
        (None: the backend cannot push them; workers watch or poll)."""
        return None

    def bulk_load(self, columns: Sequence[str]) -> BulkLoad | None:
        """What inserts many tasks (tuples of ``columns`` values) on a SQLAlchemy connection
        in its transaction by the backend's own bulk-load path, for backends where that
        beats a row-by-row ``executemany`` of the insert (None: use ``executemany``)."""
        return None

    def key_locks(self) -> sa.TextClause | None:
        """A statement that holds, until the transaction ends, a lock on each idempotency key
        in ``:keys`` (a JSON list, sorted), so that two producers enqueueing one key at once
        take turns and the second finds the first's task (None: the backend's write
        transactions already take turns)."""
        return None

    def queue_locks(self) -> sa.TextClause | None:
        """A statement that holds, until the transaction ends, a lock on each queue name in
        ``:queues`` (a JSON list, sorted), so that producers checking a queue's bound on
        pending tasks (``QUEUE_MAX_PENDING``) take turns and none overshoots it (None: the
        backend's write transactions already take turns). Taken before any key lock."""
        return None

    @abstractmethod
    def pending_by_queue(self) -> sa.TextClause | sa.Select[Any]:
        """Rows ``(queue, count)``: the pending tasks of each queue in ``:queues`` (a JSON
        list) that has any."""

    def migration_lock(self) -> sa.TextClause | None:
        """A statement that makes this transaction the only one migrating the database
        until it ends (None: the backend's write transactions already are)."""
        return None

    def server_time(self) -> sa.TextClause | None:
        """The database server's time as epoch seconds, for backends whose clients may be on
        other machines (None: the machine's clock is the database's)."""
        return None

    @abstractmethod
    def oldest_pending(self) -> sa.TextClause:
        """The earliest ``created_at`` of a pending task (NULL when there is none)."""


def backend_for(dialect: str) -> Backend:
    """The backend of a SQLAlchemy dialect name (``sqlite``, ``postgresql``)."""
    if not _BACKENDS:  # loaded on first use: the backends import this module
        from worker.storage.postgres.backend import PostgresBackend
        from worker.storage.sqlite.backend import SqliteBackend

        _BACKENDS.update({b.name: b for b in (SqliteBackend(), PostgresBackend())})
    backend = _BACKENDS.get(dialect)
    if backend is None:
        raise ValueError(f"no storage backend for the {dialect!r} dialect")
    return backend


_BACKENDS: dict[str, Backend] = {}

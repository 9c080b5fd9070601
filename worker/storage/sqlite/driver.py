"""A write transaction as one synchronous function, run in one go.

aiosqlite runs every call (cursor, execute, fetch, close, commit) on its own thread, and
each trip costs about as much as SQLite spends on an acknowledgement of a hundred tasks. The
hot path therefore writes its transactions as plain functions of a :class:`Txn`
(``body(txn)``) that :meth:`worker.storage.database.Database.transaction` runs whole: on aiosqlite's
connection either right away on the calling thread (:func:`run_now`, when the write lock is
free) or inside the driver's thread (:func:`run_in_driver`, :func:`run_waiting`: one trip),
both through :class:`DriverTxn` (the :class:`~worker.storage.txn.Txn` of a raw sqlite3
connection). Driver errors surface as SQLAlchemy's ``DBAPIError`` subclasses, as they would
on an engine connection.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import exc

if TYPE_CHECKING:
    import aiosqlite

from worker.storage.rows import UniformRows
from worker.storage.sqlite.bulk import MultiRowInsert
from worker.storage.statements import INSERT_COLUMNS, PLAIN_INSERT_COLUMNS, Statements
from worker.storage.txn import Compiling, Statement, Txn

T = TypeVar("T")
log = logging.getLogger(__name__)


class DriverTxn(Compiling):
    """A body's view of the sqlite3 connection, inside aiosqlite's thread."""

    def __init__(self, conn: sqlite3.Connection, statements: Statements) -> None:
        super().__init__(statements)
        self._conn = conn

    def rows(self, statement: Statement, **values: Any) -> list[tuple[Any, ...]]:
        prepared = self._prepared(statement)
        params = prepared.params(**values)
        try:
            return self._conn.execute(prepared.sql, params).fetchall()
        except sqlite3.Error as error:
            raise _wrap(prepared.sql, params, error) from error

    def many(
        self, statement: Statement, rows: Sequence[Mapping[str, Any]] | Sequence[tuple[Any, ...]]
    ) -> None:
        if not rows:
            return
        prepared = self._prepared(statement)
        params = prepared.params_many(rows)
        try:
            self._conn.executemany(prepared.sql, params)
        except sqlite3.Error as error:
            raise _wrap(prepared.sql, params, error) from error

    def load(self, rows: Sequence[tuple[Any, ...]]) -> bool:
        insert = _INSERT_TASKS[len(rows[0])]
        try:
            insert(self._conn, rows, rows.varying() if isinstance(rows, UniformRows) else None)
        except sqlite3.Error as error:
            raise _wrap(insert.statement, (), error) from error
        return True

    def begin(self) -> None:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            raise _wrap("BEGIN IMMEDIATE", (), error) from error

    def commit(self) -> None:
        try:
            self._conn.commit()
        except sqlite3.Error as error:
            raise _wrap("COMMIT", (), error) from error


#: The bulk inserts of :meth:`DriverTxn.load`, by row width: with the callback columns, and
#: without them (a batch in which no task names a callback).
_INSERT_TASKS = {
    len(columns): MultiRowInsert("tasks", columns)
    for columns in (INSERT_COLUMNS, PLAIN_INSERT_COLUMNS)
}


def _wrap(sql: str, params: Any, error: sqlite3.Error) -> BaseException:
    """The SQLAlchemy exception the same error would have raised on an engine connection."""
    return exc.DBAPIError.instance(sql, params, error, sqlite3.Error)


def run_in_driver(
    conn: sqlite3.Connection, statements: Statements, body: Callable[[Txn], T], lock_first: bool
) -> T:
    """Run ``body`` as one transaction on ``conn`` (call it in the connection's thread).

    The connection's ``isolation_level="IMMEDIATE"`` opens the transaction with the first
    statement that writes; ``lock_first`` opens it before a body that reads first.
    """
    txn = _fresh_txn(conn, statements)
    if lock_first:
        txn.begin()
    return _finish(conn, txn, body)


def run_waiting(
    conn: sqlite3.Connection,
    statements: Statements,
    body: Callable[[Txn], T],
    lock_first: bool,
    *,
    busy_ms: int,
    in_use: threading.Lock,
) -> T:
    """:func:`run_in_driver` on a connection whose busy timeout is 0 (see :func:`run_now`):
    this transaction waits up to ``busy_ms`` for the write lock. It holds ``in_use`` while it
    runs, even after its caller was cancelled, so that nothing runs the connection inline
    meanwhile."""
    with in_use:
        set_busy_timeout(conn, busy_ms)
        try:
            return run_in_driver(conn, statements, body, lock_first)
        finally:
            set_busy_timeout(conn, 0)


class LockTaken(Exception):
    """The write lock is held elsewhere; :func:`run_now` did nothing."""


def run_now(conn: sqlite3.Connection, statements: Statements, body: Callable[[Txn], T]) -> T:
    """Run ``body`` as one transaction on ``conn`` in the calling thread, if the write lock
    is free: ``conn``'s busy timeout must be 0, so a lock held elsewhere raises
    :class:`LockTaken` at once, before anything was done, rather than waiting here."""
    txn = _fresh_txn(conn, statements)
    try:
        txn.begin()
    except exc.OperationalError as error:
        cause = error.orig
        if (
            isinstance(cause, sqlite3.Error)
            and cause.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
        ):
            raise LockTaken from error
        raise
    return _finish(conn, txn, body)


def _fresh_txn(conn: sqlite3.Connection, statements: Statements) -> DriverTxn:
    if conn.in_transaction:
        # Only an earlier rollback that failed leaves one open; never build on its writes.
        log.error("a transaction was left open on the connection; rolling it back")
        conn.rollback()
    return DriverTxn(conn, statements)


def _finish(conn: sqlite3.Connection, txn: DriverTxn, body: Callable[[Txn], T]) -> T:
    """Run ``body`` in the open (or first-statement-opened) transaction and commit it."""
    try:
        result = body(txn)
        txn.commit()
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
    return result


def set_busy_timeout(conn: sqlite3.Connection, ms: int) -> None:
    """How long a statement on ``conn`` waits for a lock held elsewhere (0: not at all)."""
    conn.execute(f"PRAGMA busy_timeout = {int(ms)}")


def checkpoint_full(conn: sqlite3.Connection, busy_ms: int) -> tuple[int, int, int]:
    """Copy every frame of the log ``conn`` holds into the database file (waiting up to
    ``busy_ms`` for readers): ``(busy, frames in the log, frames copied)``."""
    set_busy_timeout(conn, busy_ms)
    busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(FULL)").fetchone()
    return int(busy), int(frames), int(copied)


async def tune_writer(driver: aiosqlite.Connection, *, cache_kib: int, busy_zero: bool) -> None:
    """Set up the connection hot-path transactions run on: a page cache of ``cache_kib``,
    and with ``busy_zero`` no busy wait (see :func:`run_now`: :func:`run_waiting` waits)."""
    await (await driver.execute(f"PRAGMA cache_size = -{int(cache_kib)}")).close()
    if busy_zero:
        await (await driver.execute("PRAGMA busy_timeout = 0")).close()

"""The database connection: engine, write transactions, driver-error conversion (the SQLite
connection set-up is :mod:`worker.storage.sqlite.connection`).

Every write transaction on SQLite runs under ``BEGIN IMMEDIATE``: it holds the write lock from
its first statement (waiting up to the busy timeout for it), so it never reads, then fails to
upgrade its lock with "database is locked". A transaction whose first statement writes lets
the driver open it (``isolation_level="IMMEDIATE"``: the BEGIN travels with that statement,
saving a round trip to the driver's thread on the hot path); one that reads first
(``lock_first=True``, the default) opens it explicitly before reading. Reads are single
statements outside any transaction and never block writers (WAL).

Two ways to write: :meth:`Database.transaction` runs a synchronous body (the hot path, see
:mod:`worker.storage.sqlite.driver`) whole, on a connection kept for it: on the event loop's
thread when it is small and the write lock is free, otherwise in one trip to the driver's thread;
:meth:`Database.write` opens a transaction on SQLAlchemy's async API for everything else.

:meth:`Database.open` can also open an existing file without creating anything
(``create=False``), or read-only (``read_only=True``: no writer connection, no checkpoints,
SQLite's ``query_only``, ``mode=ro`` for a file this process cannot write): the hot path's
machinery is set up only for a database the process writes to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy import exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from worker.core.config import QueueConfig
from worker.core.database_url import postgres_options
from worker.core.errors import DatabaseNotFoundError, QueueClosedError, QueueError, StorageError
from worker.core.garbage import paused_collection
from worker.storage.backend import Backend, backend_for
from worker.storage.sqlite.checkpoints import Checkpointer
from worker.storage.sqlite.connection import (
    LOCK_FIRST,
    install_sqlite_hooks,
    read_only_url,
    sqlite_path,
    writable,
)
from worker.storage.sqlite.driver import (
    LockTaken,
    checkpoint_full,
    run_in_driver,
    run_now,
    run_waiting,
    set_busy_timeout,
    tune_writer,
)
from worker.storage.sqlite.walguard import WalGuard
from worker.storage.statements import Statements
from worker.storage.txn import ConnectionTxn, Txn

if TYPE_CHECKING:  # imported where used: without it, the configuration says what to install
    import aiosqlite

log = logging.getLogger(__name__)

T = TypeVar("T")


class _Slices:
    """A caller's work in slices (``meanwhile`` of :meth:`Database.transaction`): each
    ``step`` runs one, until one says none is left."""

    def __init__(self, meanwhile: Callable[[], bool] | None) -> None:
        self._meanwhile = meanwhile
        self.left = meanwhile is not None

    def step(self) -> bool:
        if self.left and self._meanwhile is not None:
            self.left = bool(self._meanwhile())
        return self.left

    def step_and_offer(self) -> bool:
        """:meth:`step`, then the interpreter lock offered to a thread waiting for it."""
        left = self.step()
        time.sleep(0)  # releases the lock: a thread waiting for it may take it
        return left


async def _alongside(work: Awaitable[T], slices: _Slices, *, turn_each: bool) -> T:
    """Await ``work`` while ``slices`` run: after its first step (which, for a trip to a
    driver's thread, hands the body over), and with ``turn_each`` one per turn of the loop
    (for work done on the loop, such as a ``COPY`` waiting on its server). A failing slice
    cancels the wait (what the work already sent may still commit) and raises.

    Without ``turn_each`` the work is in a driver's thread, which needs the interpreter lock
    between its statements (to bind the next one's values) and would wait for it up to the
    interpreter's switch interval (5 ms) while the slices hold it: after each slice the lock
    is offered (:meth:`_Slices.step_and_offer`). It took a 50,000-task ``submit_many`` on
    SQLite (100 statements) from 0.45 s to 0.37 s, the collector off (see
    :mod:`worker.core.garbage`)."""
    if not slices.left:
        return await work
    running = asyncio.ensure_future(work)
    try:
        await asyncio.sleep(0)  # tasks run in the order they were scheduled: the work's first
        if turn_each:
            while not running.done():
                if not slices.step():
                    break
                await asyncio.sleep(0)
        else:
            # No await in here: the collector stays off for the slices and for the driver's
            # thread beside them, whose allocations would otherwise start passes over all the
            # slices have built (worker.core.garbage).
            with paused_collection():
                while not running.done() and slices.step_and_offer():
                    pass
    except BaseException:
        running.cancel()
        raise
    return await running


def _check_file(url: str, path: Path, *, create: bool) -> None:
    """Refuse a SQLite path that is a directory, or (unless ``create``) names no file."""
    if path.is_dir():
        cause = IsADirectoryError(
            f"{path} is a directory: give the database file's path (e.g. {path / 'queue.db'})"
        )
        raise StorageError(url, "opening the queue", cause)
    if not create and not path.is_file():
        raise DatabaseNotFoundError(url, str(path))


class Database:
    """Owns the engine. ``open()`` connects; the constructor does nothing."""

    def __init__(self, config: QueueConfig) -> None:
        self._config = config
        self._engine: AsyncEngine | None = None
        self._locking: AsyncEngine | None = None
        self._statements: Statements | None = None
        # transaction()'s own connection, held open (on aiosqlite), and the turn every write
        # transaction of this process takes (an in-memory database, one shared connection,
        # needs it too: BEGIN on a connection already in a transaction fails).
        self._writer: AsyncConnection | None = None
        self._driver: aiosqlite.Connection | None = None
        self._writer_turn = asyncio.Lock()
        self._checkpointer: Checkpointer | None = None
        # Checks after every commit that the WAL is still the file this process opened;
        # ``lost`` is set when it was not (or a checkpoint failed): nothing is written then.
        self._guard: WalGuard | None = None
        self.lost = asyncio.Event()
        # transaction() bodies of at most this many rows run on the loop's thread (0: never),
        # unless the driver's thread holds this (it is running one on the same connection).
        self._inline_rows = 0
        self._in_use = threading.Lock()
        self._read_only = False

    @property
    def url(self) -> str:
        return self._config.database_url

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise QueueClosedError("the queue is not open: call initialize() (or use async with)")
        return self._engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def backend(self) -> Backend:
        """The storage backend of this database's dialect (its own statements, capabilities)."""
        return backend_for(self.dialect)

    @property
    def notifies(self) -> bool:
        """Whether writers wake other processes' workers (a backend that can, not turned
        off by ``postgres_notify``)."""
        return self.backend.capabilities.pushes_wakeups and self._config.postgres_notify

    @property
    def statements(self) -> Statements:
        """The engine's dialect's hot-path statements, compiled when the database opened."""
        if self._statements is None:
            self._refuse_write("a write")
            raise QueueClosedError("the queue is not open: call initialize() (or use async with)")
        return self._statements

    def _refuse_write(self, action: str) -> None:
        if self._read_only and self._engine is not None:
            raise StorageError(self.url, action, PermissionError("the queue was opened read-only"))

    @property
    def read_only(self) -> bool:
        return self._read_only

    async def open(self, *, create: bool = True, read_only: bool = False) -> None:
        """Connect. ``create=False``: a SQLite file must exist already
        (:class:`DatabaseNotFoundError` naming it); nothing is created, not even its
        directory. ``read_only``: no writer connection, no checkpoints, :meth:`write` and
        :meth:`transaction` refuse, and SQLite refuses any change (``query_only``); a file
        (or directory) this process cannot write opens with ``mode=ro``. A writable one
        opens as usual, so that the last connection to close still removes the ``-wal``
        and ``-shm`` files (a ``mode=ro`` connection leaves them behind, owned by whoever
        ran the read, where they can lock the database's own user out)."""
        if self._engine is not None:
            return
        path = sqlite_path(self.url)
        if path is not None:
            _check_file(self.url, path, create=create)
        if path is not None and create:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StorageError(self.url, "creating the database directory", error) from error
        kwargs: dict[str, Any] = {}
        if self._config.is_sqlite:
            kwargs["connect_args"] = {"timeout": self._config.busy_timeout}
            # Every transaction ends in COMMIT or ROLLBACK (engine.begin), so the pool need
            # not roll back again on return: one thread hop less per transaction.
            kwargs["pool_reset_on_return"] = None
        else:
            # JSON columns arrive as text, as SQLite's do: the row codec parses them (or
            # not: the usual "[]" and "{}" are never parsed), not the driver.
            kwargs["json_deserializer"] = str
            # The URL's options asyncpg takes as numbers or flags (timeout=5), read: the
            # driver gets the text of a query otherwise (worker.core.database_url).
            kwargs["connect_args"] = postgres_options(make_url(self.url).query)
        target: str | URL = self.url
        if read_only and path is not None and not writable(path):
            target = read_only_url(self.url, path)
        try:
            engine = create_async_engine(target, **kwargs)
        except (exc.ArgumentError, ImportError) as error:
            raise StorageError(self.url, "creating the engine", error) from error
        self._read_only = read_only
        if engine.dialect.name == "sqlite":
            interval = self._config.sqlite_checkpoint_interval
            if path is not None and not read_only:
                self._guard = WalGuard(path, self.url, on_lost=self.lost.set)
            if path is not None and interval > 0 and not read_only:
                self._checkpointer = Checkpointer(
                    path,
                    interval_s=interval,
                    writer_turn=lambda: self._writer_turn,
                    on_failure=self._checkpoint_failed,
                )
                self._checkpointer.start()
            checkpoints = self._checkpointer is None  # commits checkpoint as SQLite's default
            install_sqlite_hooks(
                engine, self._config, path=path, checkpoints=checkpoints, read_only=read_only
            )
        # Inline transactions need a file (an in-memory database's one connection is shared
        # with reads in the driver's thread) and commits that neither sync the disk nor run
        # a checkpoint (which syncs it): synchronous=NORMAL and background checkpoints.
        inline = self._checkpointer is not None and self._config.sqlite_synchronous == "NORMAL"
        self._inline_rows = self._config.sqlite_inline_rows if inline else 0
        self._engine = engine
        self._locking = engine.execution_options(**{LOCK_FIRST: True})
        if not read_only:
            # Compiled now rather than inside the first enqueue or claim (tens of ms).
            self._statements = Statements(engine.dialect, wake=self._config.postgres_notify)

    async def close(self) -> None:
        if self._engine is not None:
            engine, self._engine, self._locking = self._engine, None, None
            writer, self._writer, self._driver = self._writer, None, None
            self._statements = None
            checkpointer, self._checkpointer = self._checkpointer, None
            try:
                if writer is not None:
                    await writer.close()
                await engine.dispose()
            finally:
                if checkpointer is not None:
                    await checkpointer.stop()

    @asynccontextmanager
    async def write(
        self, action: str, *, lock_first: bool = True
    ) -> AsyncIterator[AsyncConnection]:
        """A write transaction under ``BEGIN IMMEDIATE``; commits on success.

        ``lock_first=False`` is for transactions whose first statement writes: the driver
        then opens the transaction with that statement. The process's writers take turns
        (with :meth:`transaction`) here, not in SQLite's busy handler, which sleeps up to
        100 ms between tries; so a body must not open another write transaction.
        """
        engine = self.engine if not lock_first else self._locking
        assert engine is not None  # set with self.engine
        if self._read_only:
            self._refuse_write(action)
        try:
            async with self._turn():
                self._refuse_if_lost()
                async with engine.begin() as conn:
                    yield conn
                await self._verify_log()
        except (exc.DBAPIError, OSError) as error:
            raise self._storage_error(action, error) from error
        self._wrote()

    async def transaction(
        self,
        action: str,
        body: Callable[[Txn], T],
        *,
        lock_first: bool = False,
        rows: int = 1,
        atomic: bool = True,
        meanwhile: Callable[[], bool] | None = None,
    ) -> T:
        """Run ``body`` as one write transaction under ``BEGIN IMMEDIATE``; commits on success.

        On aiosqlite the body runs on a connection kept for these transactions, which take
        turns here rather than in SQLite's busy handler, and the whole of it runs in one
        go (see :mod:`worker.storage.sqlite.driver`): on the event loop's thread when it
        touches at most ``sqlite_inline_rows`` rows (``rows``, the caller's bound) and the
        write lock is free, otherwise in one trip to the driver's thread, where it may wait
        for the lock.
        ``lock_first`` as for :meth:`write`.

        ``atomic=False`` is for a body whose every statement stands on its own (each one is
        atomic, and none needs the others' to have happened with it): where the backend has
        row locks (PostgreSQL) its statements then commit one by one, without the BEGIN and
        COMMIT round trips; SQLite runs it as one transaction all the same.

        ``meanwhile``, if given, is the caller's own work (no I/O), in slices: each call
        does one and returns whether more is left. Its slices run on the loop's thread while
        the body is in the driver's thread (SQLite steps its statements without the
        interpreter lock), or one per turn of the loop while the transaction waits on the
        server, and whatever is left after the commit. None runs after a failure.
        """
        if self._read_only:
            self._refuse_write(action)
        inline = False
        slices = _Slices(meanwhile)
        try:
            async with self._turn():
                self._refuse_if_lost()
                driver = await self._writer_driver()
                if driver is not None:
                    inline = rows <= self._inline_rows
                    if inline:
                        try:
                            result = self._inline(driver, body)
                        except LockTaken:
                            inline = False
                    if not inline:
                        result = await self._in_thread(driver, body, lock_first, slices)
                else:
                    result = await _alongside(
                        self._through_engine(body, lock_first=lock_first, atomic=atomic),
                        slices,
                        turn_each=True,
                    )
                await self._verify_log()
        except (exc.DBAPIError, OSError) as error:
            raise self._storage_error(action, error) from error
        self._wrote()
        with paused_collection():
            while slices.step():
                pass
        if inline:
            # The transaction never awaited: let the loop's other tasks run before the
            # caller's next one (a tight dequeue loop would otherwise starve them).
            await asyncio.sleep(0)
        return result

    async def _through_engine(
        self, body: Callable[[Txn], T], *, lock_first: bool, atomic: bool
    ) -> T:
        """``body`` on a SQLAlchemy connection (drivers without a thread of their own)."""
        statements = self.statements
        if not atomic and not self.backend.capabilities.single_writer:
            async with self.engine.connect() as pooled:
                conn = await pooled.execution_options(isolation_level="AUTOCOMMIT")
                return await conn.run_sync(lambda sync: body(ConnectionTxn(sync, statements)))
        engine = self.engine if not lock_first else self._locking
        assert engine is not None  # set with self.engine
        async with engine.begin() as conn:
            return await conn.run_sync(lambda sync: body(ConnectionTxn(sync, statements)))

    def _turn(self) -> contextlib.AbstractAsyncContextManager[object]:
        """The writer turn where the backend has one writer at a time (SQLite): this
        process's writers queue here rather than in the busy handler. Elsewhere writers run
        side by side (PostgreSQL locks rows, not the database)."""
        if self.backend.capabilities.single_writer:
            return self._writer_turn
        return contextlib.nullcontext()

    def _inline(self, driver: aiosqlite.Connection, body: Callable[[Txn], T]) -> T:
        """Run ``body`` here, on the loop's thread. :class:`LockTaken` (nothing done) when the
        write lock is held elsewhere, or while a trip to the driver's thread still uses the
        connection (one whose caller was cancelled runs on): only the thread is behind it."""
        if not self._in_use.acquire(blocking=False):
            raise LockTaken
        try:
            return run_now(driver._conn, self.statements, body)
        finally:
            self._in_use.release()

    async def _in_thread(
        self,
        driver: aiosqlite.Connection,
        body: Callable[[Txn], T],
        lock_first: bool,
        slices: _Slices | None = None,
    ) -> T:
        # aiosqlite has no public "run this in your thread"; its own methods are built on
        # _execute (a test pins that this path is the one taken).
        in_thread = cast(Callable[..., Awaitable[T]], driver._execute)
        sqlite, statements = driver._conn, self.statements
        if self._inline_rows:  # the connection's busy timeout is 0, for run_now
            busy_ms = int(self._config.busy_timeout * 1000)
            trip = in_thread(
                run_waiting,
                sqlite,
                statements,
                body,
                lock_first,
                busy_ms=busy_ms,
                in_use=self._in_use,
            )
        else:
            trip = in_thread(run_in_driver, sqlite, statements, body, lock_first)
        if slices is None:
            return await trip
        return await _alongside(trip, slices, turn_each=False)

    # -- the write-ahead log taken away (worker.storage.sqlite.walguard) ----------------------

    @property
    def lost_error(self) -> StorageError | None:
        """Why the database is lost for this process (see :attr:`lost`), or None."""
        return None if self._guard is None else self._guard.lost

    def _refuse_if_lost(self) -> None:
        if self._guard is not None:
            self._guard.refuse()

    async def _verify_log(self) -> None:
        """After a commit, under the writer turn: is the WAL still the file we opened?"""
        if self._guard is None:
            return
        try:
            self._guard.check()
        except StorageError:
            self._rescue()
            raise

    async def _checkpoint_failed(self, error: BaseException) -> None:
        """The checkpointer's callback: a failed checkpoint loses the database for us."""
        if self._guard is None or self._guard.lost is not None:
            return
        async with self._writer_turn:
            self._guard.fail(f"a WAL checkpoint failed ({error})")
            self._rescue()

    def _rescue(self) -> None:
        """Copy what the writer connection's log holds (it has the old one open, even
        unlinked) into the database file: the commits this process already reported.

        It blocks the event loop, on purpose: this runs once, as the process stops writing,
        and nothing (a cancelled caller, the shutdown) may cut it short."""
        driver = self._driver
        if driver is None:
            log.critical("no writer connection holds the log: nothing could be copied")
            return
        # A trip to the driver's thread may still be using the connection: wait for it.
        if not self._in_use.acquire(timeout=self._config.busy_timeout):
            log.critical("the writer connection stayed busy: nothing could be copied")
            return
        conn = driver._conn
        busy_ms = int(self._config.busy_timeout * 1000)
        try:
            busy, frames, copied = checkpoint_full(conn, busy_ms)
        except sqlite3.Error as error:
            log.critical("copying this process's commits into %s failed: %s", self.url, error)
        else:
            log.critical(
                "copied %d of %d log frames this process holds into the database file%s",
                copied, frames, " (others were busy)" if busy else "",
            )  # fmt: skip
        finally:
            try:
                set_busy_timeout(conn, 0 if self._inline_rows else busy_ms)
            except sqlite3.Error:
                log.exception("could not restore the writer connection's busy timeout")
            self._in_use.release()

    def _wrote(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.wrote()

    async def _writer_driver(self) -> aiosqlite.Connection | None:
        """The aiosqlite connection transactions run on (None on other drivers)."""
        if self._writer is None:
            if self.engine.dialect.driver != "aiosqlite":
                return None
            import aiosqlite

            self._writer = await self.engine.connect()
            driver = (await self._writer.get_raw_connection()).driver_connection
            self._driver = driver if isinstance(driver, aiosqlite.Connection) else None
            if self._driver is not None:
                # SQLite's default cache (2 MiB) spills a large transaction's pages into the
                # WAL and reads them back: +15-20 % on a 50,000-task enqueue with 64 MiB.
                kib = self._config.sqlite_writer_cache_mb * 1024
                await tune_writer(self._driver, cache_kib=kib, busy_zero=bool(self._inline_rows))
        return self._driver

    @asynccontextmanager
    async def read(self, action: str) -> AsyncIterator[AsyncConnection]:
        """A connection for single-statement reads; never takes the write lock."""
        try:
            async with self.engine.connect() as conn:
                yield conn
        except (exc.DBAPIError, OSError) as error:
            raise self._storage_error(action, error) from error

    def _storage_error(self, action: str, error: exc.DBAPIError | OSError) -> QueueError:
        """A driver's error, or a server that cannot be reached, as a :class:`StorageError`."""
        cause = (
            error.orig if isinstance(error, exc.DBAPIError) and error.orig is not None else error
        )
        return StorageError(self.url, action, cause)

"""WAL checkpoints in the background, so that no commit waits on one.

SQLite's default copies the write-ahead log into the database file from inside the commit
that takes the log past 1,000 pages: that commit (an enqueue, a claim) pays for copying and
syncing everything written since the last one. With a :class:`Checkpointer`, the process's
connections do not checkpoint (``wal_autocheckpoint = 0``); a connection of its own does, in a
thread, ``interval_s`` after the process last wrote.

A ``PASSIVE`` checkpoint never waits for anyone, but SQLite starts the log over from the top
only when a write transaction begins after every frame was copied; racing steady writes, that
may never happen, and the log would grow without bound. So once the log is
``restart_frames`` long, a second passive copy runs holding the process's writer turn: no
writer of this process can race it, it copies the few frames the first one left, and the
next write starts the log over. Writers of other processes can still race it; at four times
that length the copy is a ``RESTART`` (as Litestream does), which also waits, at most
``RESTART_WAIT_S`` and holding the write lock, for their writers and for readers of old
frames.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

log = logging.getLogger(__name__)

#: A log this long (frames, about 4 KiB each) is restarted: ~40 MiB (Litestream's figure);
#: at four times that, other processes' writers are made to wait for it.
RESTART_FRAMES = 10_000
#: How long a RESTART waits for writers and readers (it holds the write lock while it waits).
RESTART_WAIT_S = 1.0


class Checkpointer:
    """Runs ``PRAGMA wal_checkpoint(PASSIVE)`` on its own connection after writes."""

    def __init__(
        self,
        path: Path,
        *,
        interval_s: float,
        writer_turn: Callable[[], AbstractAsyncContextManager[object]],
        restart_frames: int | None = None,
        on_failure: Callable[[BaseException], Awaitable[None]] | None = None,
    ) -> None:
        self._path = path
        self._interval = interval_s
        self._writer_turn = writer_turn
        self._on_failure = on_failure
        self._restart_frames = RESTART_FRAMES if restart_frames is None else restart_frames
        self._conn: sqlite3.Connection | None = None
        # A round cancelled by stop() goes on in its thread: stop()'s own round and the close
        # wait for it here.
        self._using = threading.Lock()
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"wal-checkpoint {self._path}"
            )

    def wrote(self) -> None:
        """The process committed a write: checkpoint within ``interval_s``."""
        self._dirty.set()

    async def stop(self) -> None:
        """Stop the loop; what the process wrote since its last round is checkpointed now."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # Not ``await task``: a cancellation of the caller itself must propagate.
            await asyncio.wait([task])
            if not task.cancelled() and task.exception() is not None:
                log.error(
                    "the WAL checkpointer of %s had stopped", self._path, exc_info=task.exception()
                )
        try:
            if self._dirty.is_set():
                self._dirty.clear()
                await asyncio.to_thread(self._checkpoint, "PASSIVE")
        except (sqlite3.Error, OSError):
            # Closing goes on: the log stays, and the next connection to close checkpoints it.
            log.exception("the last WAL checkpoint of %s failed", self._path)
        finally:
            await asyncio.to_thread(self._close)

    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self._interval)
            self._dirty.clear()  # before the round: a write during it asks for another
            try:
                await self.round()
            except (sqlite3.Error, OSError) as error:
                if _transient(error) or self._on_failure is None:
                    # The next write asks again; a checkpoint that keeps failing lets the log
                    # grow, which is what this says.
                    log.exception(
                        "WAL checkpoint of %s failed; the log grows until one succeeds",
                        self._path,
                    )
                    self._dirty.set()
                    continue
                # Not a lock held elsewhere: the log or the file is broken (a deleted log
                # fails so), and what is written now may not be kept: the owner stops writing.
                log.critical("WAL checkpoint of %s failed: %s", self._path, error)
                await self._on_failure(error)
                return

    async def round(self) -> None:
        """One round: a passive copy, then what the log's length calls for (see above)."""
        frames = await asyncio.to_thread(self._checkpoint, "PASSIVE")
        if frames >= self._restart_frames:
            mode = "RESTART" if frames >= 4 * self._restart_frames else "PASSIVE"
            async with self._writer_turn():
                await asyncio.to_thread(self._checkpoint, mode)

    def _close(self) -> None:
        with self._using:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    def _checkpoint(self, mode: str) -> int:
        """One checkpoint; the log's length in frames before it."""
        with self._using:
            if self._conn is None:
                self._conn = sqlite3.connect(
                    self._path,
                    timeout=RESTART_WAIT_S,
                    check_same_thread=False,
                    isolation_level=None,
                )
            row = self._conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        busy, frames, copied = row
        if busy and mode != "PASSIVE":
            log.warning(
                "%s checkpoint of %s gave up after %s s (a long reader or writer): "
                "%d of %d frames copied; the log restarts later",
                mode,
                self._path,
                RESTART_WAIT_S,
                copied,
                frames,
            )
        else:
            log.debug(
                "%s checkpoint of %s: %d of %d frames copied", mode, self._path, copied, frames
            )
        return int(frames)


def _transient(error: BaseException) -> bool:
    """A lock held elsewhere (SQLITE_BUSY, SQLITE_LOCKED): the next round may succeed."""
    if not isinstance(error, sqlite3.Error):
        return False
    code = getattr(error, "sqlite_errorcode", 0) & 0xFF
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)

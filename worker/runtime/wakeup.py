"""Waking idle workers without busy polling.

Two sources: the queue's in-process :class:`~worker.queue.notifier.Notifier` that ``enqueue``
pokes (and, on PostgreSQL, other processes' NOTIFY through it), and a
:class:`DatabaseWatcher` that notices other processes' commits by ``stat``-ing the SQLite
file and its ``-wal`` (size and mtime; no database round trip), and on Linux the moment
they are written (:mod:`worker.runtime.file_events`, inotify). A :class:`Waker` combines
them with a bounded fallback poll, for what neither can see (a scheduled task falling due).

Nothing here opens the database's files, and nothing must: closing any descriptor of a
file drops every POSIX lock the process holds on it, SQLite's own included, and another
process may then reset the log under this one's readers ("database disk image is
malformed"; https://sqlite.org/howtocorrupt.html, section 2.2). ``stat`` and inotify
watches hold no descriptor. (Reading the ``-shm`` wal-index header, to see a commit
become visible after its frames were written, did exactly that in a trial, and corrupted
the benchmark's database within seconds.)
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from worker.runtime import file_events

#: How often an idle worker stats the database files, and after a while of idleness.
STAT_INTERVAL_S = 0.005
IDLE_STAT_INTERVAL_S = 0.025
#: Idle for this long, a worker stats less often.
IDLE_AFTER_S = 1.0

Signature = tuple[int, int, int, int]


class DatabaseWatcher:
    """Notices commits of other connections by the database files' size and mtime."""

    def __init__(self, path: Path) -> None:
        self._paths = (path, path.with_name(path.name + "-wal"))
        self._last = self.signature()

    @property
    def paths(self) -> tuple[Path, Path]:
        """The database file and its write-ahead log."""
        return self._paths

    def signature(self) -> Signature:
        values: list[int] = []
        for path in self._paths:
            try:
                info = os.stat(path)
            except FileNotFoundError:
                values += [-1, -1]
            else:
                values += [info.st_size, info.st_mtime_ns]
        return values[0], values[1], values[2], values[3]

    def changed(self) -> bool:
        """Whether the files changed since the last call."""
        now = self.signature()
        if now == self._last:
            return False
        self._last = now
        return True


class Waker:
    """Where an idle worker waits: a poke, a database change, or the fallback poll."""

    def __init__(self, watcher: DatabaseWatcher | None, poll_interval_s: float) -> None:
        self.poke = asyncio.Event()
        self._watcher = watcher
        self._poll_interval_s = poll_interval_s
        self._idle_since: float | None = None
        #: Opened at the first wait that watches, kept until :meth:`close` (closing an
        #: inotify instance waits for the kernel's grace period: milliseconds, not per wait).
        self._events: file_events.FileEvents | None = None
        self._events_tried = False

    def close(self) -> None:
        """Stop watching the files (a later wait watches again)."""
        if self._events is not None:
            self._events.close()
        self._events, self._events_tried = None, False

    def _file_events(self) -> file_events.FileEvents | None:
        if not self._events_tried and self._watcher is not None:
            self._events_tried = True
            self._events = file_events.watch(self._watcher.paths)
        return self._events

    def busy(self) -> None:
        """Work was found: stat at the fast rate again."""
        self._idle_since = None

    async def wait(self, *, watch: bool = True) -> str:
        """Return ``"poked"``, ``"changed"`` or ``"timeout"`` (the fallback poll is due).

        With ``watch=False`` (every slot busy) only a poke ends the wait.
        """
        started = time.monotonic()
        if self._idle_since is None:
            self._idle_since = started
        # What was written since the last wait ended (this process's claim, or another's
        # commit just after that claim looked) ends this one at once: the caller looks again.
        # Forgetting it here instead lost a commit made between a claim and the next wait,
        # whose task then waited for the commit after it (the pickup's p99).
        events = self._file_events() if watch else None
        poked = asyncio.create_task(self.poke.wait())
        written = asyncio.create_task(events.written.wait()) if events is not None else None
        try:
            if not watch:
                await poked
                return "poked"
            waiting = {poked} if written is None else {poked, written}
            deadline = started + self._poll_interval_s
            while True:
                now = time.monotonic()
                idle = now - self._idle_since >= IDLE_AFTER_S
                # Beside the file events, the stats are only a backstop: the slow rate.
                step = IDLE_STAT_INTERVAL_S if idle or events is not None else STAT_INTERVAL_S
                remaining = deadline - now
                if remaining <= 0:
                    return "timeout"
                done, _ = await asyncio.wait(
                    waiting, timeout=min(step, remaining), return_when=asyncio.FIRST_COMPLETED
                )
                if poked in done:
                    return "poked"
                if written in done:
                    return "changed"
                if self._watcher is not None and self._watcher.changed():
                    return "changed"
        finally:
            poked.cancel()
            if written is not None:
                written.cancel()
            self.poke.clear()
            # The caller looks for work next, and sees every commit made before it looks; a
            # write from here on ends the next wait.
            if events is not None:
                events.drain()
            if self._watcher is not None and watch:
                self._watcher.changed()

"""Noticing that the database's write-ahead log was taken away, and then writing nothing more.

SQLite keeps a database's recent commits in ``<database>-wal`` until a checkpoint copies them
into the database file. Deleting or replacing that file under a process that has it open
loses them (SQLite's documentation calls it corruption): the process goes on committing into
the unlinked file, which vanishes when the process exits, while other processes start a new
log. Nothing in SQLite reports it; only the background checkpoints may start failing.

So a :class:`WalGuard` checks after every commit that the log is still the file the process
first saw (device and inode: one ``stat``, a microsecond). The first time it is not, or a
checkpoint fails, the database is lost for this process: :class:`~worker.storage.database.Database`
copies into the database file what its writer connection still holds (that connection has the old
log open), and every later write raises :class:`~worker.core.errors.DatabaseLostError`. A worker
stops on it and exits non-zero; its leases expire and other workers, restarted on a database
that was checked or restored, redo its tasks.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from worker.core.errors import DatabaseLostError

log = logging.getLogger(__name__)


#: How a person checks a SQLite file the queue stopped writing to (shown in the error).
HOW_TO_CHECK = "sqlite3 FILE 'PRAGMA integrity_check'"


class WalGuard:
    """Watches one database file's ``-wal``; :attr:`lost` once it went away or failed."""

    def __init__(
        self, path: Path, database_url: str, on_lost: Callable[[], None] | None = None
    ) -> None:
        self.path = path.with_name(path.name + "-wal")
        self._url = database_url
        self._on_lost = on_lost
        self._identity: tuple[int, int] | None = None
        self.lost: DatabaseLostError | None = None

    def refuse(self) -> None:
        """Raise :attr:`lost`, if the database is lost: nothing more may be written."""
        if self.lost is not None:
            raise self.lost

    def check(self) -> None:
        """After a commit: raise (and keep) :class:`DatabaseLostError` if the log is no
        longer the file first seen. The first call that finds the log remembers it."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            identity = None
        else:
            identity = (info.st_dev, info.st_ino)
        if self._identity is None:
            self._identity = identity
            return
        if identity != self._identity:
            what = "deleted" if identity is None else "replaced by another file"
            raise self.fail(f"its write-ahead log {self.path} was {what} while it was open")

    def fail(self, reason: str) -> DatabaseLostError:
        """Mark the database lost for this process (once); returns the error to raise."""
        if self.lost is None:
            self.lost = DatabaseLostError(self._url, reason, how_to_check=HOW_TO_CHECK)
            log.critical("%s", self.lost)
            if self._on_lost is not None:
                self._on_lost()
        return self.lost

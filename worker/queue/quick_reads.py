"""The queue's read methods over stdlib ``sqlite3``: what ``wq``'s read commands open.

:class:`QuickReadQueue` is :class:`~worker.queue.admin.QueueAdmin` (the same ``get_task``,
``list_tasks``, ``why``, ``get_statistics``, ... with the same checks and explanations) on
:class:`~worker.storage.sqlite.quick_reads.QuickReads` instead of the SQLAlchemy storage, so a
read command loads neither SQLAlchemy nor an event loop. Only the read methods work on it;
anything else would reach a storage method it does not have.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from worker.core.config import QueueConfig
from worker.queue.admin import QueueAdmin
from worker.storage.sqlite.quick_reads import QuickReads

if TYPE_CHECKING:
    from worker.storage.interface import Storage


class QuickReadQueue(QueueAdmin):
    """The read methods of a queue on the SQLite file ``path`` of ``config``.

    :meth:`open` raises :class:`~worker.storage.sqlite.quick_reads.NotQuick` for a file the
    queue's own path should open (it says what is wrong with it)."""

    def __init__(
        self, config: QueueConfig, path: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        from pathlib import Path

        self.config = config
        self._clock = clock
        self._reads = QuickReads(config.database_url, Path(path), busy_timeout=config.busy_timeout)
        # The read methods QueueAdmin calls are QuickReads' (a test runs each of them).
        self._storage = cast("Storage", self._reads)

    def open(self) -> None:
        self._reads.open()

    def close(self) -> None:
        self._reads.close()

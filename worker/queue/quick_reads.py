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
from typing import TYPE_CHECKING, Any, Protocol, cast

from worker.core.config import QueueConfig
from worker.queue.admin import QueueAdmin
from worker.storage.sqlite.quick_reads import QuickReads

if TYPE_CHECKING:
    from worker.core.callbacks import TaskCallback
    from worker.core.models import Task
    from worker.core.states import TaskState
    from worker.storage.interface import Storage


class QueueReads(Protocol):
    """The read methods a read command may call (``wq``'s ``session.read`` gives it one):
    those :class:`QuickReadQueue` answers, each held to the queue's own answer by a test.
    A command that needs another goes through ``session.run``, or adds it here, to
    :class:`~worker.storage.sqlite.quick_reads.QuickReads` and to those tests."""

    async def get_task(self, task_id: str) -> Task: ...

    async def why(self, task_id: str) -> str: ...

    async def task_callbacks(self, task_id: str) -> list[TaskCallback]: ...

    async def list_tasks(
        self,
        state: TaskState | str | None = None,
        queue: str | None = None,
        limit: int = 100,
        after_id: str | None = None,
        *,
        after_priority: int | None = None,
    ) -> list[Task]: ...

    async def get_statistics(self, window_s: float = 300.0) -> dict[str, Any]: ...

    async def get_queue_stats(self, queue: str | None = None) -> dict[str, int]: ...

    async def paused_queues(self) -> dict[str, float]: ...


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

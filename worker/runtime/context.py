"""``TaskContext``: what a handler gets besides its item (progress, cancellation, checkpoints).

The task's stored ``checkpoint`` belongs to the runtime and holds::

    {"done": {"<index>": result, ...}, "item": <index>, "data": <handler data>}

``done`` lets a retried attempt skip the items an earlier attempt finished; ``data`` is what
the handler of item ``item`` last passed to :meth:`TaskContext.checkpoint`, handed back as
:attr:`TaskContext.checkpoint_data` when the same item runs again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import JsonValue, ValidationError

from worker.core.arguments import problems
from worker.core.errors import InvalidInputError, QueueError
from worker.core.models import Progress, Task, TaskItem
from worker.core.storable import json_text
from worker.runtime.threads import ThreadGroup

if TYPE_CHECKING:
    from worker.core.config import QueueConfig
    from worker.queue.worker_queue import WorkerQueue

log = logging.getLogger(__name__)

#: At most one progress write per task per this many seconds (the last value always lands).
#: Each write is a transaction the handler waits for (about 2-4 ms here): at 0.1 s a
#: two-sentence speech task wrote twice, about half of what the queue added to it.
PROGRESS_INTERVAL_S = 1.0

ProgressHook = Callable[[Task, Progress], None]


def done_items(checkpoint: JsonValue) -> dict[int, JsonValue]:
    """The results of the items an earlier attempt finished, from a stored checkpoint."""
    if not isinstance(checkpoint, dict):
        return {}
    done = checkpoint.get("done")
    if not isinstance(done, dict):
        return {}
    return {int(index): result for index, result in done.items() if index.isdigit()}


class TaskContext:
    """One attempt at one task, as its handlers see it (one item at a time)."""

    def __init__(
        self, queue: WorkerQueue, task: Task, on_progress: ProgressHook | None = None
    ) -> None:
        if task.lease_id is None:
            raise ValueError(f"task {task.id} has no lease: only claimed tasks run")
        self.queue = queue
        self.task = task
        self.index = 0
        self.cancelled = False
        #: The threads its plain ``def`` handlers run in (:mod:`worker.runtime.threads`).
        self.threads = ThreadGroup(f"task {task.id}")
        self.done: dict[int, JsonValue] = done_items(task.checkpoint)
        self._lease_id = task.lease_id
        self._on_progress = on_progress
        self._saved = task.checkpoint if isinstance(task.checkpoint, dict) else {}
        # The first write waits a throttle interval too: a task that finishes sooner never
        # writes progress on its own (its last report travels with the completion).
        self._last_write = time.monotonic()
        self._pending: tuple[float, float | None, str | None] | None = None
        self._timer: asyncio.Task[None] | None = None

    @property
    def config(self) -> QueueConfig:
        return self.queue.config

    @property
    def item(self) -> TaskItem:
        return self.task.items[self.index]

    @property
    def checkpoint_data(self) -> JsonValue:
        """What this item's handler saved with :meth:`checkpoint` in an earlier attempt."""
        if self._saved.get("item") == self.index:
            return self._saved.get("data")
        return None

    # -- cancellation ----------------------------------------------------------------------

    async def check_cancelled(self) -> None:
        """Raise ``asyncio.CancelledError`` if this task was asked to stop."""
        if self.cancelled:
            raise asyncio.CancelledError(f"task {self.task.id} was cancelled")

    # -- progress --------------------------------------------------------------------------

    async def progress(
        self, current: float, total: float | None = None, message: str | None = None
    ) -> None:
        """Report progress: ``task_progress`` callbacks hear every report at once; database
        writes are throttled, and the latest value is always written (by the completion, if
        the task completes first)."""
        report = _progress(current, total, message)  # refused here, naming the field
        self._pending = (current, total, message)
        if self._on_progress is not None:
            self._on_progress(self.task, report)
        if self._timer is not None:
            return
        wait = self._last_write + PROGRESS_INTERVAL_S - time.monotonic()
        if wait <= 0:
            await self._write()
        else:
            self._timer = asyncio.create_task(self._write_later(wait))

    async def flush_progress(self) -> None:
        """Write a progress value still held back by the throttle."""
        self.stop_timer()
        await self._write()

    def take_progress(self) -> Progress | None:
        """The report not yet written (for the completion to carry); nothing is left pending."""
        self.stop_timer()
        if self._pending is None:
            return None
        current, total, message = self._pending
        self._pending = None
        return Progress(current=current, total=total, message=message, at=time.time())

    def stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _write_later(self, wait: float) -> None:
        await asyncio.sleep(wait)
        self._timer = None
        try:
            await self._write()
        except QueueError as exc:
            log.warning("progress of task %s not recorded: %s", self.task.id, exc)

    async def _write(self) -> None:
        if self._pending is None:
            return
        current, total, message = self._pending
        self._pending = None
        self._last_write = time.monotonic()
        await self.queue.set_progress(self.task.id, self._lease_id, current, total, message)

    # -- checkpoints -----------------------------------------------------------------------

    async def checkpoint(self, data: JsonValue) -> None:
        """Save ``data`` for this item; a later attempt reads it as :attr:`checkpoint_data`.

        ``data`` must be JSON the database can store (:func:`worker.core.storable.json_text`),
        else :class:`~worker.core.errors.InvalidInputError` names it."""
        try:
            json_text(data, "checkpoint data")
        except ValueError as exc:
            raise InvalidInputError(str(exc)) from exc
        await self._save({"item": self.index, "data": data})

    async def finish_item(self, result: JsonValue) -> None:
        """Record item ``index``'s result so that a retried attempt skips it."""
        self.done[self.index] = result
        await self._save({})

    async def _save(self, extra: dict[str, Any]) -> None:
        value: dict[str, JsonValue] = {"done": {str(i): r for i, r in self.done.items()}}
        value.update(extra)
        await self.queue.save_checkpoint(self.task.id, self._lease_id, value)
        self._saved = value


def _progress(current: float, total: float | None, message: str | None) -> Progress:
    """A progress report, checked: numbers finite, the message text the database can store."""
    try:
        return Progress(current=current, total=total, message=message, at=time.time())
    except ValidationError as exc:
        raise InvalidInputError(problems("progress", exc)) from exc

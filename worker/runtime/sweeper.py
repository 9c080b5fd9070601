"""``retry_sweeper``: run the queue's sweep every few seconds (expired leases, backoff)."""

from __future__ import annotations

import asyncio
import logging

from worker.core import observers
from worker.core.errors import DatabaseLostError, QueueClosedError, QueueError
from worker.core.kinds import task_kinds
from worker.core.models import Task
from worker.core.states import TaskState
from worker.queue.worker_queue import WorkerQueue

log = logging.getLogger(__name__)


async def retry_sweeper(
    queue: WorkerQueue, interval_s: float | None = None, *, stop: asyncio.Event | None = None
) -> None:
    """Sweep every ``interval_s`` (default: the config's ``sweep_interval``) until ``stop``
    is set or the coroutine is cancelled. A failed sweep is logged and tried again."""
    interval = queue.config.sweep_interval if interval_s is None else interval_s
    if interval <= 0:
        raise ValueError(f"interval_s must be > 0, got {interval}")
    stop = stop or asyncio.Event()
    while not stop.is_set():
        try:
            await sweep(queue)
        except (QueueClosedError, DatabaseLostError):
            raise
        except QueueError:
            log.exception("retry sweep failed; trying again in %s s", interval)
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except TimeoutError:
            continue


async def sweep(queue: WorkerQueue) -> list[Task]:
    """One sweep (``queue.retry()``), with a log line for each task it moved."""
    moved = await queue.retry()
    for task in moved:
        report_move(task)
    return moved


def report_move(task: Task) -> None:
    """One log line for a task the sweep moved (requeues after a failure only at DEBUG: the
    worker logged the failure)."""
    last = task.errors[-1] if task.errors else None
    lost = last is not None and last.expired and last.at == task.updated_at
    # This sweep's expiry: its error is stamped a moment apart from updated_at (see above).
    if last is not None and last.expired and abs(last.at - task.updated_at) < 1.0:
        observers.lease_expired(task)
    kind = task_kinds(task)
    extra = {
        "task_id": task.id,
        "kind": kind,
        "queue": task.queue,
        "attempt": task.attempt_count,
        "error": task.last_error,
    }
    if task.state is TaskState.DISCARDED:
        log.error(
            "task %s (%s) discarded after %d attempt(s): %s",
            task.id, kind, task.attempt_count, task.last_error,
            extra={**extra, "event": "task_discarded"},
        )  # fmt: skip
    elif task.state is TaskState.CANCELLED:
        log.warning(
            "task %s (%s) cancelled: %s", task.id, kind, task.last_error,
            extra={**extra, "event": "task_cancelled"},
        )  # fmt: skip
    elif lost:
        log.warning(
            "task %s (%s) attempt %d lost: %s; it will run again",
            task.id, kind, task.attempt_count, task.last_error,
            extra={**extra, "event": "task_lost"},
        )  # fmt: skip
    else:
        log.debug("task %s (%s) requeued", task.id, kind, extra={**extra, "event": "task_requeued"})

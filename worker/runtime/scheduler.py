"""``schedule_loop``: fire the schedules' due ticks every few seconds, in every worker.

Each :class:`~worker.Worker` runs one beside its retry sweeper. Any number of them may run
on one database, on any number of machines: each tick is enqueued by exactly one of them
(:mod:`worker.storage.schedules` says how), within ``schedule_interval`` of its time while
at least one worker runs. Ticks that passed while none ran are caught up as each schedule's
``catch_up`` says (:mod:`worker.core.schedules`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from worker.core.errors import DatabaseLostError, QueueClosedError, QueueError
from worker.queue.worker_queue import WorkerQueue

log = logging.getLogger(__name__)


async def schedule_loop(
    queue: WorkerQueue, *, stop: asyncio.Event | None = None, interval_s: float | None = None
) -> None:
    """Fire due ticks every ``interval_s`` (default: the config's ``schedule_interval``)
    until ``stop`` is set or the coroutine is cancelled. A failed round is logged and tried
    again."""
    interval = queue.config.schedule_interval if interval_s is None else interval_s
    if interval <= 0:
        raise ValueError(f"interval_s must be > 0, got {interval}")
    stop = stop or asyncio.Event()
    while not stop.is_set():
        try:
            await queue.fire_schedules()
        except (QueueClosedError, DatabaseLostError):
            raise
        except QueueError:
            log.exception("firing schedules failed; trying again in %s s", interval)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)

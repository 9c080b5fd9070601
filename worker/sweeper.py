"""``retry_sweeper``: run the queue's sweep every few seconds (expired leases, backoff)."""

from __future__ import annotations

import asyncio
import logging

from worker.errors import QueueClosedError, QueueError
from worker.queue import WorkerQueue

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
            moved = await queue.retry()
        except QueueClosedError:
            raise
        except QueueError:
            log.exception("retry sweep failed; trying again in %s s", interval)
        else:
            if moved:
                log.debug("sweep moved %d task(s)", len(moved))
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except TimeoutError:
            continue

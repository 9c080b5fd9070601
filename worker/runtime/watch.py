"""Watching a loop's running tasks: cancel requests and lost claims reach their handlers fast.

A cancel of a running task is a write to its row (``cancel_requested_at``). The watcher
notices it without a write of its own:

- in this process at once: :meth:`WorkerQueue.mark_as_cancelled` pokes ``queue.cancels``;
- from another process within about :data:`LOOK_GAP_S`: while tasks run it ``stat``-s the
  database files every :data:`STAT_INTERVAL_S` (as idle workers do to notice enqueues) and,
  when they changed, reads the running tasks' rows (one read; it never takes the write lock);
- in any case within :data:`FALLBACK_LOOK_S`, for what the files cannot show.

With a registered worker (:class:`~worker.runtime.liveness.Liveness`) it also sends the liveness
beat every ``heartbeat_interval``; the beat reports the same things from inside its write.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Literal

from worker.core.errors import DatabaseLostError, QueueClosedError, QueueError

if TYPE_CHECKING:
    from worker.queue.worker_queue import WorkerQueue
    from worker.runtime.liveness import Liveness
    from worker.runtime.wakeup import DatabaseWatcher
    from worker.storage.control import LeaseReport

log = logging.getLogger(__name__)

StopReason = Literal["cancel", "lost", "shutdown"]

#: How often the database files are looked at while tasks run.
STAT_INTERVAL_S = 0.05
#: At most one read of the running tasks per this long, however often the files change.
LOOK_GAP_S = 0.25
#: A read at least this often while tasks run, changed files or not.
FALLBACK_LOOK_S = 1.0
#: After a failed read or beat, wait this long before the next try.
ERROR_PAUSE_S = 0.5


class RunWatcher:
    """Tells running handlers to stop: ``stop(task_id, reason)`` for cancels and lost claims.

    ``leases()`` gives the running ``(task_id, lease_id)`` claims at the moment of asking.
    """

    def __init__(
        self,
        queue: WorkerQueue,
        leases: Callable[[], Sequence[tuple[str, str]]],
        stop: Callable[[str, StopReason], None],
        *,
        liveness: Liveness | None,
        files: DatabaseWatcher | None,
    ) -> None:
        self._queue = queue
        self._leases = leases
        self._stop = stop
        self._liveness = liveness
        self._files = files
        self._interval_s = queue.config.heartbeat_interval
        self._poked = asyncio.Event()  # a cancel in this process
        self._started = asyncio.Event()  # a task started: watch again

    def started(self) -> None:
        """A task started (the watcher sleeps while nothing runs)."""
        self._started.set()

    async def run(self) -> None:
        """Watch until cancelled."""
        self._queue.cancels.subscribe(self._poked)
        try:
            await self._watch()
        finally:
            self._queue.cancels.unsubscribe(self._poked)

    async def _watch(self) -> None:
        next_beat = time.monotonic() + self._interval_s  # registering was the first beat
        last_look = float("-inf")
        changed = False
        while True:
            now = time.monotonic()
            if self._liveness is not None and now >= next_beat:
                next_beat = now + self._interval_s
                if await self._apply(self._liveness.beat, "liveness heartbeat"):
                    last_look, changed = now, False
                else:
                    next_beat = now + ERROR_PAUSE_S
                continue
            self._started.clear()  # the leases read next include every task started so far
            leases = self._leases()
            if leases:
                if self._files is not None and self._files.changed():
                    changed = True
                due = (changed and now - last_look >= LOOK_GAP_S) or (
                    now - last_look >= FALLBACK_LOOK_S
                )
                if self._poked.is_set() or due:
                    self._poked.clear()
                    if await self._apply(self._queue.lease_report, "looking at running tasks"):
                        last_look, changed = now, False
                    else:
                        last_look = now + ERROR_PAUSE_S - FALLBACK_LOOK_S
                    continue
                wait: float | None = STAT_INTERVAL_S
            else:
                self._poked.clear()  # nothing runs here: nothing to stop
                wait = None
            if self._liveness is not None:
                until_beat = max(0.0, next_beat - now)
                wait = until_beat if wait is None else min(wait, until_beat)
            await self._sleep(wait)

    async def _sleep(self, seconds: float | None) -> None:
        """Until ``seconds`` pass (None: no limit), a task starts, or a cancel is poked."""
        waits = [
            asyncio.ensure_future(self._poked.wait()),
            asyncio.ensure_future(self._started.wait()),
        ]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()

    async def _apply(
        self, look: Callable[[Sequence[tuple[str, str]]], Awaitable[LeaseReport]], what: str
    ) -> bool:
        """Run ``look`` over the running claims and stop what it reports; False on failure."""
        leases = list(self._leases())
        try:
            report = await look(leases)
        except (QueueClosedError, DatabaseLostError):
            raise
        except QueueError:
            log.exception("%s failed; trying again in %s s", what, ERROR_PAUSE_S)
            return False
        for task_id in report.lost:
            self._stop(task_id, "lost")
        for task_id in report.cancel_requested:
            self._stop(task_id, "cancel")
        return True

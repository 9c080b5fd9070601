"""One change feed per app: it notices database changes, reads what open pages show once,
and fans the result out to every subscriber in memory.

A subscriber names *topics* (``"overview"``, ``"task:<id>"``); the feed's one reader turns a
topic into a payload (an HTML fragment, a task's JSON). After each change it reads every
topic somebody follows, once, however many follow it, and hands each subscriber the payloads
that differ from what it was last sent. So fifty open pages cost the database what one does.

How a change is noticed (:class:`Trigger`):

- SQLite: by ``stat``-ing the database file and its ``-wal`` every :data:`STAT_INTERVAL_S`,
  as idle workers do (:class:`~worker.runtime.wakeup.DatabaseWatcher`): any commit of any
  process (an enqueue, a claim, a progress report, an acknowledgement) changes them, and
  an unchanged file costs no database round trip.
- PostgreSQL: the queue's LISTEN connection (:meth:`WorkerQueue.receive_wakeups`) pushes
  enqueues and cancel requests at once; what sends no notification (progress reports,
  acknowledgements) is picked up by a look every :data:`POSTGRES_LOOK_S`, one per app.
- Both: this process's own enqueues and cancels poke the queue's notifiers, and a round
  runs at least every :data:`REFRESH_S` (ages shown on the pages grow by themselves).

Rounds are at least :data:`MIN_GAP_S` apart, so a burst of progress writes costs one read.
Each subscriber has a bounded queue; when a slow client lets it fill, the oldest payload
is dropped (a payload is a whole snapshot, so the newest one is all a client needs).

The feed starts with its first subscriber and stops with its last, or at :meth:`close`
(the app's shutdown), which also ends every open stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from worker.core.errors import QueueClosedError, QueueError
from worker.runtime.wakeup import DatabaseWatcher
from worker.storage.sqlite.connection import sqlite_path

if TYPE_CHECKING:
    from worker.queue.worker_queue import WorkerQueue

log = logging.getLogger(__name__)

#: How often the SQLite files are looked at while somebody follows the feed.
STAT_INTERVAL_S = 0.05
#: On PostgreSQL, how often the feed looks for what no notification announces.
POSTGRES_LOOK_S = 0.5
#: A round at least this often, changed or not.
REFRESH_S = 5.0
#: Rounds at least this far apart.
MIN_GAP_S = 0.1
#: Payloads a subscriber's queue holds before the oldest is dropped.
SUBSCRIBER_BACKLOG = 8
#: After a failed read, wait this long before the next round.
ERROR_PAUSE_S = 1.0

#: Reads a topic's payload; ``None``: nothing to show (a task that is gone).
Reader = Callable[[str], Awaitable[object]]


class Trigger(Protocol):
    """What tells the feed that the database may have changed."""

    async def wait(self, timeout_s: float) -> None:
        """Return after a change, a poke, or ``timeout_s``."""

    def close(self) -> None:
        """Stop receiving pokes."""


class PokedTrigger:
    """A poke from this process's notifiers (and, where the backend pushes them, other
    processes' NOTIFY through the queue's listener), or a look every ``look_s``; with a
    ``watcher``, a change of the SQLite files too."""

    def __init__(self, queue: WorkerQueue, watcher: DatabaseWatcher | None, look_s: float) -> None:
        self._queue = queue
        self._watcher = watcher
        self._look_s = look_s
        self.poke = asyncio.Event()
        queue.notifier.subscribe(self.poke)
        queue.cancels.subscribe(self.poke)
        if watcher is None:
            queue.receive_wakeups()

    def close(self) -> None:
        self._queue.notifier.unsubscribe(self.poke)
        self._queue.cancels.unsubscribe(self.poke)

    async def wait(self, timeout_s: float) -> None:
        deadline = time.monotonic() + min(timeout_s, self._look_s)
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                step = remaining if self._watcher is None else min(remaining, STAT_INTERVAL_S)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.poke.wait(), step)
                    return
                if self._watcher is not None and self._watcher.changed():
                    return
        finally:
            self.poke.clear()


def trigger_for(queue: WorkerQueue) -> PokedTrigger:
    """SQLite: watch the files (and look at least every :data:`REFRESH_S`); PostgreSQL:
    LISTEN, and look every :data:`POSTGRES_LOOK_S`."""
    path = sqlite_path(queue.config.database_url)
    if path is not None:
        return PokedTrigger(queue, DatabaseWatcher(path), REFRESH_S)
    return PokedTrigger(queue, None, POSTGRES_LOOK_S)


class Subscription:
    """One subscriber's topics and its bounded queue of ``(topic, payload)``."""

    def __init__(self, topics: Iterable[str]) -> None:
        self.topics = frozenset(topics)
        self.sent: dict[str, object] = {}
        self.dropped = 0
        self._queue: asyncio.Queue[tuple[str, object] | None] = asyncio.Queue(SUBSCRIBER_BACKLOG)

    def offer(self, topic: str, payload: object) -> None:
        """Queue ``payload`` unless it is what this subscriber has; when full, drop the
        oldest."""
        if topic in self.sent and self.sent[topic] == payload:
            return
        self.sent[topic] = payload
        self._put((topic, payload))

    def end(self) -> None:
        self._put(None)

    def _put(self, entry: tuple[str, object] | None) -> None:
        while True:
            try:
                self._queue.put_nowait(entry)
                return
            except asyncio.QueueFull:
                self._queue.get_nowait()
                self.dropped += 1

    async def next(self) -> tuple[str, object] | None:
        """The next ``(topic, payload)``; ``None`` once the feed closed."""
        return await self._queue.get()


class ChangeFeed:
    """The one poller of an app: see the module's docstring."""

    def __init__(self, reader: Reader, trigger: Callable[[], Trigger]) -> None:
        self._reader = reader
        self._make_trigger = trigger
        self._subscribers: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._wanted = asyncio.Event()  # a new subscriber: read now
        self._closed = False
        #: Rounds run and topics read (tests count them).
        self.rounds = 0
        self.reads = 0
        #: How many times the poller started (it stops with its last subscriber).
        self.starts = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @contextlib.asynccontextmanager
    async def subscribe(self, topics: Iterable[str]) -> AsyncIterator[Subscription]:
        """A subscription to ``topics`` for the ``async with`` block; the first one starts
        the poller, the last one's end stops it."""
        if self._closed:
            raise QueueClosedError("the web app is shutting down")
        subscription = Subscription(topics)
        self._subscribers.add(subscription)
        self._wanted.set()
        if not self.running:
            self.starts += 1
            self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)
            if not self._subscribers:
                await self._stop()

    async def close(self) -> None:
        """Stop the poller and end every subscription (the app's shutdown)."""
        self._closed = True
        for subscription in list(self._subscribers):
            subscription.end()
        await self._stop()

    async def _stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        trigger = self._make_trigger()
        try:
            last = float("-inf")
            while True:
                gap = MIN_GAP_S - (time.monotonic() - last)
                if gap > 0:
                    await asyncio.sleep(gap)
                last = time.monotonic()
                self._wanted.clear()
                if not await self._round():
                    await asyncio.sleep(ERROR_PAUSE_S)
                if self._wanted.is_set():
                    continue
                waits = [
                    asyncio.ensure_future(self._wanted.wait()),
                    asyncio.ensure_future(trigger.wait(REFRESH_S)),
                ]
                try:
                    done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                    for finished in done:
                        finished.result()  # a trigger that failed raises here
                finally:
                    for waiting in waits:
                        waiting.cancel()
                    await asyncio.gather(*waits, return_exceptions=True)
        except asyncio.CancelledError:
            raise
        except BaseException:
            log.exception("the change feed stopped")
            for subscription in list(self._subscribers):
                subscription.end()  # their streams end rather than wait forever
            raise
        finally:
            trigger.close()

    async def _round(self) -> bool:
        """Read each followed topic once and offer it to its followers; False on failure."""
        self.rounds += 1
        followed = sorted({t for s in self._subscribers for t in s.topics})
        for topic in followed:
            try:
                payload = await self._reader(topic)
            except QueueClosedError:
                raise
            except QueueError:
                log.exception("the change feed could not read %s", topic)
                return False
            self.reads += 1
            for subscription in list(self._subscribers):
                if topic in subscription.topics:
                    subscription.offer(topic, payload)
        return True

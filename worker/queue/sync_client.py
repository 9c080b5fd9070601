"""``SyncQueue``: the queue for code without an event loop (Django and Flask views, scripts,
notebooks, threads).

It is not a second implementation: a :class:`~worker.queue.worker_queue.WorkerQueue` runs on
an event loop of its own, in a daemon thread this client starts, and every method hands a
coroutine of that queue to the loop (``asyncio.run_coroutine_threadsafe``) and waits for
its result. The statements, the validation and the errors are the async API's; only the
waiting differs. Any number of threads may share one client: their calls run side by side on
its loop, as coroutines of one process's queue do.

::

    queue = SyncQueue("sqlite:///data/queue.db")   # opens on first use (or open(), with)
    task = queue.submit(EmailRequest(to="ada@example.com"), priority=Priority.HIGH)
    queue.get_task(task.id).state                  # TaskState.PENDING
    queue.close()

The loop's thread is a daemon: a program that exits without :meth:`SyncQueue.close` loses
nothing that a call had returned (every write is committed before it returns), but close it
to end its connections cleanly. Open it after a fork (a pre-forking server's workers each
open their own), not before: a thread does not survive ``fork``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar, Unpack

from pydantic import BaseModel

from worker.core.config import QueueConfig
from worker.core.errors import QueueClosedError
from worker.core.models import Task
from worker.core.states import TaskState
from worker.queue.submission import SubmitOptions
from worker.queue.worker_queue import WorkerQueue

T = TypeVar("T")


class SyncQueue:
    """A :class:`WorkerQueue` driven from threads without an event loop (see the module
    docstring). ``config``: a :class:`QueueConfig`, or a database URL (or SQLite path given
    as ``sqlite:///PATH``). ``create``: as :meth:`WorkerQueue.initialize`'s."""

    def __init__(
        self,
        config: QueueConfig | str | None = None,
        *,
        create: bool = True,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if isinstance(config, str):
            config = QueueConfig(database_url=config)
        self.config = config if config is not None else QueueConfig()
        self._create = create
        self._clock = clock
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._queue: WorkerQueue | None = None
        self._closed = False
        #: The calls handed to the loop and not yet done (any thread), and on the loop, the
        #: tasks running them: what close() waits for, then stops.
        self._futures: set[concurrent.futures.Future[Any]] = set()
        self._futures_lock = threading.Lock()  # not self._lock: the loop's thread takes it
        self._calls: set[asyncio.Task[Any]] = set()

    # -- lifecycle -----------------------------------------------------------------------

    def open(self) -> Self:
        """Start the loop's thread and open the queue (the first call does it otherwise)."""
        self._portal()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Close the queue and stop the loop's thread; later calls raise
        :class:`~worker.core.errors.QueueClosedError`. Calls in flight in other threads get
        ``timeout`` seconds to finish; those still running then raise
        :class:`~worker.core.errors.QueueClosedError` (a write among them may or may not
        have been committed: read it back)."""
        with self._lock:
            self._closed = True
            loop, thread, queue = self._loop, self._thread, self._queue
            self._loop = self._thread = self._queue = None
        if loop is None or thread is None:
            return
        try:
            if queue is not None:
                asyncio.run_coroutine_threadsafe(self._shut(queue, timeout), loop).result()
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
            with self._futures_lock:
                stranded, self._futures = self._futures, set()
            for future in stranded:  # never started: the loop stopped first
                if not future.done():
                    future.set_exception(QueueClosedError("the SyncQueue was closed"))

    async def _shut(self, queue: WorkerQueue, grace_s: float) -> None:
        """On the loop: let the calls in flight finish within ``grace_s``, stop the rest
        (they raise QueueClosedError, see :meth:`_future`), then close the queue."""
        calls = set(self._calls)
        if calls:
            _, late = await asyncio.wait(calls, timeout=grace_s)
            for call in late:
                call.cancel()
            if late:
                await asyncio.wait(late)
        await queue.close()

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def queue(self) -> WorkerQueue:
        """The async queue this client drives (opened on first use); use it only through
        :meth:`call`, on its own loop."""
        return self._portal()[1]

    # -- any operation -------------------------------------------------------------------

    def call(self, operation: Callable[[WorkerQueue], Awaitable[T]]) -> T:
        """Run ``operation(queue)`` on the queue's loop and return its result (or raise its
        error): ``sync.call(lambda q: q.why(task_id))`` for what has no method here."""
        return self._future(operation).result()

    async def call_async(self, operation: Callable[[WorkerQueue], Awaitable[T]]) -> T:
        """:meth:`call` from another event loop, without blocking it."""
        return await asyncio.wrap_future(self._future(operation))

    def _future(
        self, operation: Callable[[WorkerQueue], Awaitable[T]]
    ) -> concurrent.futures.Future[T]:
        calls = self._calls

        async def run() -> T:
            me = asyncio.current_task()
            assert me is not None  # run() is a task's coroutine
            calls.add(me)
            try:
                return await operation(queue)
            except asyncio.CancelledError:
                if self._closed:  # close() stopped it: say so, not "cancelled"
                    raise QueueClosedError("the SyncQueue was closed while the call ran") from None
                raise
            finally:
                calls.discard(me)

        # Under the lock: close() cannot stop the loop between the check and the hand-over.
        with self._lock:
            loop, queue = self._opened()
            if threading.current_thread() is self._thread:
                raise RuntimeError("a SyncQueue method was called on its own loop: await the queue")
            future = asyncio.run_coroutine_threadsafe(run(), loop)
            with self._futures_lock:
                self._futures.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: concurrent.futures.Future[Any]) -> None:
        with self._futures_lock:
            self._futures.discard(future)

    def _portal(self) -> tuple[asyncio.AbstractEventLoop, WorkerQueue]:
        with self._lock:
            return self._opened()

    def _opened(self) -> tuple[asyncio.AbstractEventLoop, WorkerQueue]:
        """The loop and the queue, started on first use (the lock held)."""
        if self._closed:
            raise QueueClosedError("the SyncQueue was closed")
        if self._loop is None or self._queue is None:
            self._start()
        assert self._loop is not None  # set by _start
        assert self._queue is not None
        return self._loop, self._queue

    def _start(self) -> None:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=loop.run_forever, name=f"SyncQueue {self.config.database_url}", daemon=True
        )
        thread.start()
        queue = WorkerQueue(self.config, clock=self._clock)
        opening: Coroutine[Any, Any, None] = queue.initialize(create=self._create)
        try:
            asyncio.run_coroutine_threadsafe(opening, loop).result()
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
            raise
        self._loop, self._thread, self._queue = loop, thread, queue

    # -- producing -----------------------------------------------------------------------

    def submit(self, request: BaseModel, **options: Unpack[SubmitOptions]) -> Task:
        """:meth:`WorkerQueue.submit`."""
        return self.call(lambda q: q.submit(request, **options))

    def submit_many(
        self, requests: Iterable[BaseModel], **options: Unpack[SubmitOptions]
    ) -> list[Task]:
        """:meth:`WorkerQueue.submit_many`."""
        return self.call(lambda q: q.submit_many(requests, **options))

    def enqueue(self, tasks: Iterable[Task | Mapping[str, Any]]) -> int:
        """:meth:`WorkerQueue.enqueue` (fills in each given task's id)."""
        return self.call(lambda q: q.enqueue(tasks))

    # -- reading and control -------------------------------------------------------------

    def get_task(self, task_id: str) -> Task:
        """:meth:`WorkerQueue.get_task`."""
        return self.call(lambda q: q.get_task(task_id))

    def list_tasks(
        self,
        state: TaskState | str | None = None,
        queue: str | None = None,
        limit: int = 100,
        after_id: str | None = None,
        *,
        after_priority: int | None = None,
    ) -> list[Task]:
        """:meth:`WorkerQueue.list_tasks`."""
        return self.call(
            lambda q: q.list_tasks(state, queue, limit, after_id, after_priority=after_priority)
        )

    def cancel(self, task_id: str, *, reason: str | None = None) -> TaskState:
        """:meth:`WorkerQueue.mark_as_cancelled`: the task's state afterwards."""
        return self.call(lambda q: q.mark_as_cancelled(task_id, reason=reason))

    def stats(self, queue: str | None = None) -> dict[str, int]:
        """:meth:`WorkerQueue.get_queue_stats`."""
        return self.call(lambda q: q.get_queue_stats(queue))

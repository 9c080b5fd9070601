"""``WorkerQueue``: the public API. Validates at the edge, reads the clock, delegates SQL."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from pydantic import JsonValue, ValidationError

from worker.core import arguments, observers
from worker.core.clock import Clock, DatabaseClock
from worker.core.config import QueueConfig
from worker.core.errors import (
    InvalidInputError,
    InvalidTaskError,
    StorageError,
)
from worker.core.garbage import paused_collection
from worker.core.models import Completion, Failure, Progress, Resources, Task
from worker.core.states import TaskState
from worker.core.storable import CHECKPOINT_WRAPPING, json_text, safe_text
from worker.queue.admin import QueueAdmin
from worker.queue.encode import task_rows
from worker.queue.notifier import Notifier
from worker.queue.producing import QueueProducer
from worker.queue.schedules import QueueSchedules
from worker.storage.backend import Listening, Wake
from worker.storage.control import Heartbeat
from worker.storage.interface import Storage, open_storage

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


def _validated(index: int, task: Task | Mapping[str, Any]) -> Task:
    if isinstance(task, Task):
        checked = task
    elif isinstance(task, Mapping):
        try:
            checked = Task.model_validate(task)
        except ValidationError as exc:
            raise InvalidTaskError(arguments.problems(f"tasks[{index}]", exc)) from exc
    else:
        raise InvalidTaskError(
            f"tasks[{index}] must be a Task or a mapping of its fields, got {type(task).__name__}"
        )
    if checked.state is not TaskState.PENDING:
        raise InvalidTaskError(
            f"tasks[{index}].state: a new task must be pending, got {checked.state.value}"
        )
    return checked


def _delay(name: str, delay_s: float | None) -> None:
    if delay_s is not None:
        arguments.seconds(name, delay_s, zero=True)


class WorkerQueue(QueueAdmin, QueueProducer, QueueSchedules):
    """A durable task queue on one database. Open with ``initialize()`` or ``async with``."""

    def __init__(
        self,
        config: QueueConfig | None = None,
        *,
        worker_id: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config if config is not None else QueueConfig()
        self.worker_id = worker_id
        self._storage: Storage = open_storage(self.config)
        # Without a clock of the caller's, the machine's; on a database other machines share,
        # corrected to the server's when the queue opens (see worker.core.clock).
        self._server_clock: DatabaseClock | None = None
        if clock is None and self.config.database_clock and not self.config.is_sqlite:
            self._server_clock = DatabaseClock(self._server_time)
        self._clock: Clock = clock or self._server_clock or time.time
        #: Poked after every enqueue that inserted something: wakes this process's workers.
        self.notifier = Notifier()
        #: Poked when a running task is asked to stop: this process's workers look at once.
        self.cancels = Notifier()
        self._listener: Listening | None = None
        self._sweeping = asyncio.Lock()  # retry(): one sweep of this process at a time
        self._schedule_problems: dict[str, str] = {}

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def storage_lost(self) -> asyncio.Event:
        """Set when the database is lost for this process (its SQLite write-ahead log was
        deleted under it, or a checkpoint failed; see :mod:`worker.storage.sqlite.walguard`):
        every write raises :class:`~worker.core.errors.DatabaseLostError` from then on, and workers
        stop."""
        return self._storage.lost

    @property
    def storage_lost_error(self) -> StorageError | None:
        """The :class:`~worker.core.errors.DatabaseLostError` behind :attr:`storage_lost`."""
        return self._storage.lost_error

    async def initialize(self, *, create: bool | None = None, read_only: bool = False) -> None:
        """Connect, and by default create the database or bring it to the newest schema
        revision (``async with`` does this).

        ``create=False``: use an existing database as it is; never create a file or
        directory, never migrate. A missing SQLite file raises
        :class:`~worker.core.errors.DatabaseNotFoundError` naming it; a database at another
        schema revision raises :class:`~worker.core.errors.SchemaOutdatedError` (migrate it with
        ``initialize()`` or ``wq db upgrade``). ``read_only=True`` (implies
        ``create=False``): also open the file read-only, so reads work on a file or
        directory this process may not write, and never take the write lock; every write
        then raises :class:`~worker.core.errors.StorageError`.
        """
        if create is None:
            create = not read_only
        if create and read_only:
            raise InvalidInputError("initialize: a read-only queue cannot create its database")
        await self._storage.open(create=create, read_only=read_only)
        if self._server_clock is not None:
            try:
                await self._server_clock.measure()
            except BaseException:
                await self._storage.close()
                raise

    def receive_wakeups(self) -> None:
        """Have other processes' enqueues and cancel requests poke :attr:`notifier` and
        :attr:`cancels` too, where the backend can push them (PostgreSQL's LISTEN, unless
        ``postgres_notify`` is off; SQLite workers watch the file instead). Workers call
        it; it runs until :meth:`close`."""
        if self._listener is None:
            on_wake: dict[Wake, Callable[[], None]] = {
                "tasks": self.notifier.notify,
                "cancels": self.cancels.notify,
            }
            self._listener = self._storage.listener(on_wake)
            if self._listener is not None:
                self._listener.start()

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.stop()
        if self._server_clock is not None:
            await self._server_clock.close()
        await self._storage.close()

    @property
    def storage(self) -> Storage:
        """The database's operations this queue runs (for the runtime's parts and tests)."""
        return self._storage

    @property
    def clock(self) -> Clock:
        """The clock this queue decides with (epoch seconds): the one it was given, else the
        machine's, corrected to the database server's on PostgreSQL (``database_clock``)."""
        return self._clock

    async def _server_time(self) -> float:
        server = await self._storage.server_time()
        return time.time() if server is None else server

    async def __aenter__(self) -> Self:
        await self.initialize()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- producing -----------------------------------------------------------------------

    async def enqueue(self, tasks: Iterable[Task | Mapping[str, Any]]) -> int:
        """Insert tasks atomically; returns how many were inserted.

        Fills in each given :class:`Task`'s ``id`` (a new ULID, or the live task that holds
        its idempotency key), ``created_at``, ``updated_at`` and ``schedule_at`` when zero.
        One invalid task refuses the whole batch, naming its index and field.
        """
        if isinstance(tasks, str | bytes | Mapping | Task) or not isinstance(tasks, Iterable):
            raise InvalidInputError(
                f"tasks must be a list of Task or mappings, got {type(tasks).__name__}"
            )
        with paused_collection():  # a batch of acyclic objects (worker.core.garbage)
            checked = [_validated(index, task) for index, task in enumerate(tasks)]
            now = self._clock()
            rows = task_rows(checked, now)
        if not rows:
            return 0
        ids, inserted = await self._storage.insert(rows, now, max_pending=self.config.max_pending)
        for task, task_id in zip(checked, ids, strict=True):
            task.__dict__["id"] = task_id
        if inserted:
            self.notifier.notify()
        if observers.active():
            observers.enqueued(checked, inserted)
        return inserted

    # -- consuming -----------------------------------------------------------------------

    async def dequeue(
        self,
        size: int | None = None,
        queues: Sequence[str] | None = None,
        resources: Resources | None = None,
        *,
        worker_id: str | None = None,
    ) -> list[Task]:
        """Claim up to ``size`` due tasks (default: the config's batch size).

        ``resources`` is what the caller has free: only tasks whose declared needs fit in it
        together are claimed. ``worker_id`` (default: the queue's) is recorded as the tasks'
        worker; a registered worker's id ties the tasks to its liveness heartbeat.
        """
        size = self.config.batch_size if size is None else arguments.count("size", size)
        chosen = arguments.queue_names("queues", queues)
        _resources(resources)
        claimer = self.worker_id if worker_id is None else worker_id
        return await self._storage.claim(size, self._clock(), chosen, claimer, resources)

    async def any_due(
        self, queues: Sequence[str] | None = None, resources: Resources | None = None
    ) -> bool:
        """Whether a task is claimable now (due, not held, not waiting, queue not paused, and
        each on its own fitting ``resources`` when given)."""
        chosen = arguments.queue_names("queues", queues)
        _resources(resources)
        return await self._storage.any_due(self._clock(), chosen, resources)

    async def mark_as_complete(
        self, task_id: str, *, lease_id: str | None = None, results: list[JsonValue] | None = None
    ) -> None:
        """PROCESSING -> COMPLETED. With ``lease_id``, a stale lease raises ``LeaseLostError``.

        ``results`` (one per item) must be JSON the database can store: no NaN or infinity,
        text that is UTF-8, at most ``MAX_JSON_DEPTH`` levels deep; else
        ``InvalidInputError`` names the result (``results[0]``).
        """
        _claim(task_id, lease_id)
        if results is not None and not isinstance(results, list):
            raise InvalidInputError(f"results must be a list, got {type(results).__name__}")
        await self._storage.complete(
            [Completion(task_id, lease_id, results)], self._clock(), strict=True
        )

    async def complete_many(self, completions: Sequence[Completion]) -> list[str]:
        """Complete many claimed tasks in one transaction; returns the ids refused."""
        return await self._storage.complete(completions, self._clock(), strict=False)

    async def mark_as_retry(
        self,
        task_id: str,
        error: str,
        *,
        lease_id: str | None = None,
        delay_s: float | None = None,
    ) -> None:
        """PROCESSING -> RETRYABLE; the next sweep requeues it after backoff (or ``delay_s``).

        A task whose cancel was requested during this run ends CANCELLED instead. A lone
        surrogate in ``error`` is kept as its escape (``\\udcff``): error texts come from
        exceptions, which a handler cannot control.
        """
        _claim(task_id, lease_id)
        _delay("delay_s", delay_s)
        await self._storage.fail(
            "retry", [Failure(task_id, error, lease_id, delay_s)], self._clock(), strict=True
        )

    async def discard_many(self, failures: Sequence[Failure]) -> list[str]:
        """Discard many claimed tasks in one transaction; returns the ids refused."""
        return await self._storage.fail("discard", failures, self._clock(), strict=False)

    async def retry_many(self, failures: Sequence[Failure]) -> list[str]:
        """Mark many claimed tasks retryable in one transaction; returns the ids refused."""
        for index, failure in enumerate(failures):
            _delay(f"failures[{index}].delay_s", failure.delay_s)
        return await self._storage.fail("retry", failures, self._clock(), strict=False)

    async def mark_as_discarded(
        self, task_id: str, error: str | None = None, *, lease_id: str | None = None
    ) -> None:
        """PROCESSING -> DISCARDED: failed for good, no more attempts (``error`` as for
        :meth:`mark_as_retry`)."""
        _claim(task_id, lease_id)
        reason = error if error is not None else "discarded"
        await self._storage.fail(
            "discard", [Failure(task_id, reason, lease_id)], self._clock(), strict=True
        )

    async def mark_as_cancelled(
        self, task_id: str, *, lease_id: str | None = None, reason: str | None = None
    ) -> TaskState:
        """Cancel a task; returns its state afterwards.

        PENDING or RETRYABLE tasks end CANCELLED at once. A PROCESSING task is asked to stop:
        it stays PROCESSING (with ``cancel_requested_at`` set) until its worker, which
        notices within a second (at once in this process), stops the handler and calls this
        again with its ``lease_id`` to end it CANCELLED; a task whose worker died ends
        CANCELLED when the sweep finds the worker dead or the lease expired.
        """
        _claim(task_id, lease_id)
        if reason is not None:
            reason = safe_text(arguments.string("reason", reason))
        now = self._clock()
        if lease_id is not None:
            await self._storage.end_cancelled(task_id, lease_id, now, reason)
            return TaskState.CANCELLED
        state = await self._storage.cancel(task_id, now, reason)
        if state is TaskState.PROCESSING:
            self.cancels.notify()
        return state

    async def mark_as_resume(self, task_id: str) -> None:
        """DISCARDED -> PENDING, due now, with at least one more attempt."""
        arguments.text("task_id", task_id)
        await self._storage.resume(task_id, self._clock(), self.config.default_max_attempts)

    async def extend_lease(
        self, task_id: str, lease_id: str, seconds: float | None = None
    ) -> float:
        """Renew a claim's lease (heartbeat); returns the new ``lease_expires_at``."""
        _claim(task_id, arguments.text("lease_id", lease_id))
        if seconds is not None:
            arguments.seconds("seconds", seconds)
        return await self._storage.extend_lease(task_id, lease_id, self._clock(), seconds)

    async def heartbeat(
        self, leases: Sequence[tuple[str, str]], seconds: float | None = None
    ) -> Heartbeat:
        """Renew many ``(task_id, lease_id)`` leases at once; reports lost leases and cancels."""
        pairs = arguments.leases("leases", leases)
        if seconds is not None:
            arguments.seconds("seconds", seconds)
        return await self._storage.heartbeat(pairs, self._clock(), seconds)

    async def release(self, leases: Sequence[tuple[str, str]]) -> list[str]:
        """Give claimed tasks back (graceful shutdown): PENDING, due now, attempt not used."""
        return await self._storage.release(arguments.leases("leases", leases), self._clock())

    async def set_progress(
        self,
        task_id: str,
        lease_id: str,
        current: float,
        total: float | None = None,
        message: str | None = None,
    ) -> Progress:
        """Record a running task's progress (fenced by its lease). ``current`` and ``total``
        must be finite; ``message`` UTF-8 text of at most ``MAX_MESSAGE_CHARS`` characters."""
        _claim(task_id, arguments.text("lease_id", lease_id))
        try:
            progress = Progress(current=current, total=total, message=message, at=self._clock())
        except ValidationError as exc:
            raise InvalidInputError(arguments.problems("progress", exc)) from exc
        await self._storage.set_progress(task_id, lease_id, progress.model_dump(), progress.at)
        return progress

    async def save_checkpoint(self, task_id: str, lease_id: str, data: JsonValue) -> None:
        """Keep ``data`` with the task; a later attempt reads it back as ``task.checkpoint``.

        ``data`` must be JSON the database can store (as ``results`` of
        :meth:`mark_as_complete`), else ``InvalidInputError`` names it."""
        _claim(task_id, arguments.text("lease_id", lease_id))
        try:
            json_text(data, "data", wrapped=CHECKPOINT_WRAPPING)
        except ValueError as exc:
            raise InvalidInputError(str(exc)) from exc
        if (
            isinstance(data, int)
            and not isinstance(data, bool)
            and not _INT64[0] <= data <= _INT64[1]
        ):
            # A bare number is stored as a number (the column's NUMERIC affinity): beyond
            # 64 bits SQLite would keep it as a float, and it would come back changed.
            raise InvalidInputError(
                f"data: {data} is beyond 64-bit integers: a checkpoint that is a bare number "
                "must fit in one (put it in a list or an object)"
            )
        await self._storage.save_checkpoint(task_id, lease_id, data, self._clock())


_INT64 = (-(2**63), 2**63 - 1)


def _claim(task_id: Any, lease_id: Any) -> None:
    """Check the ids an acknowledgement names."""
    arguments.text("task_id", task_id)
    arguments.optional_text("lease_id", lease_id)


def _resources(resources: Any) -> None:
    if resources is not None and not isinstance(resources, Resources):
        raise InvalidInputError(
            f"resources must be a Resources(...) or None, got {type(resources).__name__}"
        )

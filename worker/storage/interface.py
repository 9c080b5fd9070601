"""The storage interface: the named operations the queue runs on a database.

:class:`~worker.queue.worker_queue.WorkerQueue` validates its arguments, applies policy (defaults,
backoff,
what a state allows) and calls one of these; a storage carries it out atomically and returns
what happened. Times are given (``now``): the queue decides with its clock, the storage never
reads one. Rows arrive already encoded (:mod:`worker.storage.rows`), tasks leave decoded.

:func:`open_storage` picks the implementation by the database URL's scheme. Today both
backends share one, :class:`~worker.storage.sql_storage.SqlStorage` on SQLAlchemy Core, whose
SQL differs per backend only where :mod:`worker.storage.backend` says; a backend that needs
other code entirely implements this protocol instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from worker.core.callbacks import TaskCallback
    from worker.core.config import QueueConfig
    from worker.core.deliveries import WebhookDelivery
    from worker.core.errors import StorageError
    from worker.core.models import Completion, Failure, Resources, Task
    from worker.core.selection import BulkAction, BulkOutcome, TaskFilter
    from worker.core.states import TaskState
    from worker.storage.backend import Capabilities, Listening, Wake
    from worker.storage.callbacks import CallbackStore
    from worker.storage.control import Heartbeat, LeaseReport
    from worker.storage.history import HistoryPoint, HistoryTotals
    from worker.storage.reads import QueueFigures
    from worker.storage.rows import InsertRow
    from worker.storage.schedules import ScheduleStore
    from worker.storage.sweep import RetryPlan
    from worker.storage.webhooks import WebhookStore


class Storage(Protocol):
    """The operations of one database (see the module docstring)."""

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities: ...

    @property
    def lost(self) -> asyncio.Event:
        """Set when this process can no longer write safely (SQLite's log taken away)."""
        ...

    @property
    def lost_error(self) -> StorageError | None: ...

    async def open(self, *, create: bool, read_only: bool) -> None:
        """Connect; with ``create``, create the database or bring it to the newest schema
        (one process at a time), else check that it is at the newest."""
        ...

    async def close(self) -> None: ...

    async def server_time(self) -> float | None:
        """The database server's clock, where other machines may share it (else None)."""
        ...

    def listener(self, on_wake: dict[Wake, Callable[[], None]]) -> Listening | None:
        """A receiver of other processes' wake-ups, where the backend pushes them."""
        ...

    @property
    def webhooks(self) -> WebhookStore:
        """The webhook deliveries' operations: the scan of finished tasks, adding, claiming
        and settling deliveries (:mod:`worker.webhooks` runs them)."""
        ...

    @property
    def callbacks(self) -> CallbackStore:
        """The callbacks' operations: the scan of ended tasks that name one, adding,
        claiming and settling their runs (:mod:`worker.runtime.callbacks` runs them)."""
        ...

    @property
    def schedules(self) -> ScheduleStore:
        """The schedules' operations: declaring, reading, removing, and firing a tick (the
        compare-and-set on its ``next_run_at`` and its tasks' insert, one transaction)."""
        ...

    # -- producing and claiming -----------------------------------------------------------

    async def insert(
        self,
        rows: Sequence[InsertRow],
        now: float,
        *,
        max_pending: int = 0,
        meanwhile: Callable[[], bool] | None = None,
    ) -> tuple[list[str], int]:
        """Insert encoded tasks atomically: each row's id (a live holder's for a reused
        idempotency key) and how many were inserted. ``max_pending`` (0: none): the most
        pending tasks a queue may hold after it, else ``QueueFullError`` and nothing is
        written. ``meanwhile`` (the caller's own work, no I/O, in slices: each call does
        one and says whether more is left) runs while the rows are written, as far as the
        writing leaves this thread free, and to its end after it; not after a failure."""
        ...

    async def claim(
        self,
        size: int,
        now: float,
        queues: Sequence[str] | None,
        worker_id: str | None,
        resources: Resources | None,
    ) -> list[Task]: ...

    async def any_due(
        self, now: float, queues: Sequence[str] | None, resources: Resources | None
    ) -> bool: ...

    async def release(self, leases: Sequence[tuple[str, str]], now: float) -> list[str]: ...

    # -- acknowledgements and moves -------------------------------------------------------

    async def complete(
        self, completions: Sequence[Completion], now: float, *, strict: bool
    ) -> list[str]: ...

    async def fail(
        self,
        operation: Literal["retry", "discard"],
        failures: Sequence[Failure],
        now: float,
        *,
        strict: bool,
    ) -> list[str]: ...

    async def cancel(self, task_id: str, now: float, reason: str | None) -> TaskState: ...

    async def end_cancelled(
        self, task_id: str, lease_id: str, now: float, reason: str | None
    ) -> None:
        """A running task's worker ends it CANCELLED (fenced by its lease)."""
        ...

    async def resume(self, task_id: str, now: float, default_max_attempts: int) -> None: ...

    async def hold(self, task_id: str, now: float) -> None: ...

    async def unhold(self, task_id: str, now: float) -> None: ...

    async def run_now(self, task_id: str, now: float) -> None:
        """A pending task becomes due now (its ``schedule_at`` moves to ``now``)."""
        ...

    async def bulk_move(
        self,
        action: BulkAction,
        *,
        ids: Sequence[str] | None,
        chosen: TaskFilter | None,
        now: float,
        default_max_attempts: int,
    ) -> BulkOutcome:
        """Apply ``action`` to the tasks ``ids`` names (one transaction) or to all those
        ``chosen`` matches (in batches), with the single-task moves' rules."""
        ...

    async def extend_lease(
        self, task_id: str, lease_id: str, now: float, seconds: float | None
    ) -> float: ...

    async def heartbeat(
        self, leases: Sequence[tuple[str, str]], now: float, seconds: float | None
    ) -> Heartbeat: ...

    async def set_progress(
        self, task_id: str, lease_id: str, progress: Mapping[str, Any], now: float
    ) -> None: ...

    async def save_checkpoint(self, task_id: str, lease_id: str, data: Any, now: float) -> None: ...

    async def sweep(
        self,
        size: int,
        now: float,
        *,
        visibility_timeout: float | None,
        max_attempts: int,
        plan: RetryPlan,
        dead_before: float,
    ) -> list[Task]:
        """Expire the leases of dead workers and past their time, requeue retryable tasks
        (``plan`` says when), discard exhausted ones; the tasks moved."""
        ...

    # -- reads ----------------------------------------------------------------------------

    async def get(self, task_id: str) -> Task: ...

    async def list_tasks(
        self,
        chosen: TaskFilter,
        *,
        limit: int,
        after_id: str | None,
        after_priority: int | None = None,
    ) -> list[Task]:
        """A page of the tasks ``chosen`` matches after ``after_id``: in id order, pending
        tasks in claim order after ``(after_priority, after_id)``."""
        ...

    async def count_tasks(self, chosen: TaskFilter) -> int: ...

    async def count_by_state(self, queue: str | None) -> dict[str, int]: ...

    async def position(self, task_id: str, queue: str, priority: int, now: float) -> int: ...

    async def unfinished_dependencies(self, task_id: str) -> list[tuple[str, str]]: ...

    async def dependents(self, task_id: str) -> list[tuple[str, str]]: ...

    async def window(self, since: float) -> dict[str, Any]:
        """Figures over tasks finished since ``since``, per-queue counts, oldest pending."""
        ...

    async def queue_figures(self) -> QueueFigures:
        """Per queue: tasks per state and the oldest pending task's ``created_at``."""
        ...

    async def history_series(
        self, queue: str | None, since: float, until: float, step_minutes: int
    ) -> list[HistoryPoint]:
        """Acknowledgements per time step from the persisted history (``task_history``)."""
        ...

    async def history_totals(self) -> HistoryTotals: ...

    async def prune_history(self, now: float) -> int: ...

    async def webhook_deliveries(self, task_id: str) -> list[WebhookDelivery]: ...

    async def task_callbacks(self, task_id: str) -> list[TaskCallback]: ...

    # -- operators, workers, retention ----------------------------------------------------

    async def pause_queue(self, queue: str, now: float) -> None: ...

    async def unpause_queue(self, queue: str) -> bool: ...

    async def paused(self) -> dict[str, float]: ...

    async def register_worker(self, row: dict[str, Any]) -> None: ...

    async def worker_heartbeat(self, worker_id: str, now: float, *, stopped: bool) -> None: ...

    async def worker_alive(
        self, worker_id: str, now: float, leases: Sequence[tuple[str, str]]
    ) -> LeaseReport | None: ...

    async def lease_report(self, leases: Sequence[tuple[str, str]]) -> LeaseReport: ...

    async def live_workers(self, since: float) -> list[dict[str, Any]]: ...

    async def purge(self, cutoff: float, states: Iterable[TaskState]) -> list[str]: ...


def open_storage(config: QueueConfig) -> Storage:
    """The storage of ``config.database_url`` (not connected yet: :meth:`Storage.open`)."""
    from worker.storage.sql_storage import SqlStorage

    return SqlStorage(config)

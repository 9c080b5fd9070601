"""The storage of both backends, on SQLAlchemy Core: :class:`SqlStorage`.

Each group of operations is a module of its own (``store``: enqueue and claim;
``transitions``: acknowledgements and single-task moves; ``sweep``; ``reads``; ``control``:
operators, workers, statistics, purge; webhook deliveries; callbacks; schedules), all on one
:class:`~worker.storage.database.Database`. This class is the one door to them: the queue sees the
named operations of :class:`~worker.storage.interface.Storage`, never a store, a column or SQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

from worker.core.callbacks import TaskCallback
from worker.core.config import QueueConfig
from worker.core.deliveries import WebhookDelivery
from worker.core.errors import StorageError
from worker.core.models import Completion, Failure, Resources, Task
from worker.core.selection import BulkAction, BulkOutcome, TaskFilter
from worker.core.states import TaskState
from worker.storage.backend import Capabilities, Listening, Wake
from worker.storage.bulk_moves import BulkMoveStore
from worker.storage.callbacks import CallbackStore
from worker.storage.control import ControlStore, Heartbeat, LeaseReport
from worker.storage.database import Database
from worker.storage.enqueue_claim import TaskStore
from worker.storage.history import HistoryPoint, HistoryStore, HistoryTotals
from worker.storage.reads import QueueFigures, ReadStore
from worker.storage.revision import check_schema
from worker.storage.rows import InsertRow
from worker.storage.schedules import ScheduleStore
from worker.storage.sweep import RetryPlan, SweepStore
from worker.storage.transitions import TransitionStore, operator_values
from worker.storage.webhooks import WebhookStore


class SqlStorage:
    """:class:`~worker.storage.interface.Storage` on one SQLAlchemy database."""

    def __init__(self, config: QueueConfig) -> None:
        self.config = config
        #: The connection machinery (engine, write transactions); for the runtime's own
        #: stores and for tests that look under the hood.
        self.database = db = Database(config)
        vt = config.default_visibility_timeout
        self._moves = TransitionStore(db, vt)
        self._tasks = TaskStore(db, vt, self._moves)
        self._reads = ReadStore(db)
        self._bulk = BulkMoveStore(db)
        self._history = HistoryStore(db)
        self._sweep = SweepStore(db)
        self._control = ControlStore(db, vt)
        self._webhooks = WebhookStore(db)
        self._schedules = ScheduleStore(db, self._tasks)
        self._callbacks = CallbackStore(db)

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        return self.database.backend.capabilities

    @property
    def lost(self) -> asyncio.Event:
        return self.database.lost

    @property
    def lost_error(self) -> StorageError | None:
        return self.database.lost_error

    async def open(self, *, create: bool, read_only: bool) -> None:
        db = self.database
        await db.open(create=create, read_only=read_only)
        try:
            if create:
                from worker.storage.migrate import (
                    upgrade_to_head,  # Alembic is heavy: only to migrate
                )

                async with db.write("schema upgrade") as conn:
                    lock = db.backend.migration_lock()
                    if lock is not None:
                        await conn.execute(lock)
                    await conn.run_sync(upgrade_to_head)
            else:
                url = self.config.database_url
                async with db.read("schema check") as conn:
                    await conn.run_sync(lambda sync: check_schema(sync, url))
        except BaseException:
            await db.close()
            raise

    async def close(self) -> None:
        await self.database.close()

    async def server_time(self) -> float | None:
        statement = self.database.backend.server_time()
        if statement is None:
            return None
        async with self.database.read("reading the server's clock") as conn:
            return float((await conn.execute(statement)).scalar_one())

    @property
    def webhooks(self) -> WebhookStore:
        return self._webhooks

    @property
    def schedules(self) -> ScheduleStore:
        return self._schedules

    @property
    def callbacks(self) -> CallbackStore:
        return self._callbacks

    def listener(self, on_wake: dict[Wake, Callable[[], None]]) -> Listening | None:
        if not self.database.notifies:
            return None
        return self.database.backend.listener(self.config.database_url, on_wake)

    # -- producing and claiming -----------------------------------------------------------

    async def insert(
        self,
        rows: Sequence[InsertRow],
        now: float,
        *,
        max_pending: int = 0,
        meanwhile: Callable[[], bool] | None = None,
    ) -> tuple[list[str], int]:
        return await self._tasks.insert(rows, now, max_pending=max_pending, meanwhile=meanwhile)

    async def claim(
        self,
        size: int,
        now: float,
        queues: Sequence[str] | None,
        worker_id: str | None,
        resources: Resources | None,
    ) -> list[Task]:
        return await self._tasks.claim(size, now, queues, worker_id, resources)

    async def any_due(
        self, now: float, queues: Sequence[str] | None, resources: Resources | None
    ) -> bool:
        return await self._tasks.any_due(now, queues, resources)

    async def release(self, leases: Sequence[tuple[str, str]], now: float) -> list[str]:
        return await self._tasks.release(leases, now)

    # -- acknowledgements and moves -------------------------------------------------------

    async def complete(
        self, completions: Sequence[Completion], now: float, *, strict: bool
    ) -> list[str]:
        return await self._moves.complete(completions, now, strict=strict)

    async def fail(
        self,
        operation: Literal["retry", "discard"],
        failures: Sequence[Failure],
        now: float,
        *,
        strict: bool,
    ) -> list[str]:
        return await self._moves.fail(operation, failures, now, strict=strict)

    async def cancel(self, task_id: str, now: float, reason: str | None) -> TaskState:
        return await self._moves.cancel(task_id, now, reason)

    async def end_cancelled(
        self, task_id: str, lease_id: str, now: float, reason: str | None
    ) -> None:
        values: dict[str, Any] = {"finished_at": now, "updated_at": now, "lease_expires_at": None}
        if reason is not None:
            values["last_error"] = reason
        await self._moves.transition("cancel_running", task_id, values, lease_id=lease_id)

    async def resume(self, task_id: str, now: float, default_max_attempts: int) -> None:
        await self._moves.resume(task_id, now, default_max_attempts)

    async def hold(self, task_id: str, now: float) -> None:
        await self._moves.transition("hold", task_id, operator_values("hold", now))

    async def unhold(self, task_id: str, now: float) -> None:
        await self._moves.transition("unhold", task_id, operator_values("unhold", now))

    async def run_now(self, task_id: str, now: float) -> None:
        await self._moves.transition("run_now", task_id, operator_values("run_now", now))

    async def bulk_move(
        self,
        action: BulkAction,
        *,
        ids: Sequence[str] | None,
        chosen: TaskFilter | None,
        now: float,
        default_max_attempts: int,
    ) -> BulkOutcome:
        return await self._bulk.apply(
            action, ids=ids, chosen=chosen, now=now, default_max_attempts=default_max_attempts
        )

    async def extend_lease(
        self, task_id: str, lease_id: str, now: float, seconds: float | None
    ) -> float:
        return await self._moves.extend_lease(task_id, lease_id, now, seconds)

    async def heartbeat(
        self, leases: Sequence[tuple[str, str]], now: float, seconds: float | None
    ) -> Heartbeat:
        return await self._control.heartbeat(leases, now, seconds)

    async def set_progress(
        self, task_id: str, lease_id: str, progress: Mapping[str, Any], now: float
    ) -> None:
        values = {"progress": dict(progress), "updated_at": now}
        await self._moves.transition("progress", task_id, values, lease_id=lease_id)

    async def save_checkpoint(self, task_id: str, lease_id: str, data: Any, now: float) -> None:
        values = {"checkpoint": data, "updated_at": now}
        await self._moves.transition("progress", task_id, values, lease_id=lease_id)

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
        return await self._sweep.sweep(
            size,
            now,
            visibility_timeout=visibility_timeout,
            max_attempts=max_attempts,
            plan=plan,
            dead_before=dead_before,
        )

    # -- reads ----------------------------------------------------------------------------

    async def get(self, task_id: str) -> Task:
        return await self._reads.get(task_id)

    async def list_tasks(
        self,
        chosen: TaskFilter,
        *,
        limit: int,
        after_id: str | None,
        after_priority: int | None = None,
    ) -> list[Task]:
        return await self._reads.list(
            chosen, limit=limit, after_id=after_id, after_priority=after_priority
        )

    async def count_tasks(self, chosen: TaskFilter) -> int:
        return await self._reads.count(chosen)

    async def count_by_state(self, queue: str | None) -> dict[str, int]:
        return await self._reads.count_by_state(queue)

    async def position(self, task_id: str, queue: str, priority: int, now: float) -> int:
        return await self._control.position(task_id, queue, priority, now)

    async def unfinished_dependencies(self, task_id: str) -> list[tuple[str, str]]:
        return await self._control.unfinished_dependencies(task_id)

    async def dependents(self, task_id: str) -> list[tuple[str, str]]:
        return await self._control.dependents(task_id)

    async def window(self, since: float) -> dict[str, Any]:
        return await self._control.window(since)

    async def queue_figures(self) -> QueueFigures:
        return await self._reads.queue_figures()

    async def history_series(
        self, queue: str | None, since: float, until: float, step_minutes: int
    ) -> list[HistoryPoint]:
        return await self._history.series(queue, since, until, step_minutes)

    async def history_totals(self) -> HistoryTotals:
        return await self._history.totals()

    async def prune_history(self, now: float) -> int:
        return await self._history.prune(now)

    async def webhook_deliveries(self, task_id: str) -> list[WebhookDelivery]:
        return await self._webhooks.for_task(task_id)

    async def task_callbacks(self, task_id: str) -> list[TaskCallback]:
        return await self._callbacks.for_task(task_id)

    # -- operators, workers, retention ----------------------------------------------------

    async def pause_queue(self, queue: str, now: float) -> None:
        await self._control.pause_queue(queue, now)

    async def unpause_queue(self, queue: str) -> bool:
        return await self._control.unpause_queue(queue)

    async def paused(self) -> dict[str, float]:
        return await self._control.paused()

    async def register_worker(self, row: dict[str, Any]) -> None:
        await self._control.register_worker(row)

    async def worker_heartbeat(self, worker_id: str, now: float, *, stopped: bool) -> None:
        await self._control.worker_heartbeat(worker_id, now, stopped=stopped)

    async def worker_alive(
        self, worker_id: str, now: float, leases: Sequence[tuple[str, str]]
    ) -> LeaseReport | None:
        return await self._control.worker_alive(worker_id, now, leases)

    async def lease_report(self, leases: Sequence[tuple[str, str]]) -> LeaseReport:
        return await self._control.lease_report(leases)

    async def live_workers(self, since: float) -> list[dict[str, Any]]:
        return await self._control.live_workers(since)

    async def purge(self, cutoff: float, states: Iterable[TaskState]) -> list[str]:
        return await self._control.purge(cutoff, states)

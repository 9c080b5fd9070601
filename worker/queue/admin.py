"""The operator half of :class:`worker.queue.worker_queue.WorkerQueue`: holds and pauses,
explanations, workers and statistics, the retry sweep, reads and retention.

``WorkerQueue`` inherits these methods; they are here to keep each module about one thing.
The queue sets the attributes declared below.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from worker.core import arguments
from worker.core.backoff import next_attempt_at
from worker.core.config import QueueConfig
from worker.core.errors import InvalidInputError
from worker.core.ids import is_ulid
from worker.core.limits import MAX_INSTANT, MAX_PRIORITY, MIN_PRIORITY
from worker.core.models import RetryPolicy, Task
from worker.core.selection import BULK_ACTIONS, BulkAction, BulkOutcome, TaskFilter
from worker.core.states import TERMINAL_STATES, TaskState
from worker.queue.explain import explain, explain_pending

#: The windows of :meth:`QueueAdmin.history`: span (seconds) and step (minutes).
HISTORY_WINDOWS: Mapping[str, tuple[float, int]] = {"hour": (3600.0, 1), "day": (86400.0, 15)}
#: How often a process's sweep drops history rows past what is kept.
HISTORY_PRUNE_EVERY_S = 3600.0

if TYPE_CHECKING:
    # Types only: wq's read commands run these methods on a storage without SQLAlchemy
    # (worker.queue.quick_reads), which must not load it or the event loop.
    import asyncio

    from worker.core.callbacks import TaskCallback
    from worker.core.deliveries import WebhookDelivery
    from worker.queue.notifier import Notifier
    from worker.storage.control import LeaseReport
    from worker.storage.history import HistoryPoint, HistoryTotals
    from worker.storage.interface import Storage
    from worker.storage.reads import QueueFigures

#: The most ids one bulk action by id takes.
MAX_BULK_IDS = 1000


class QueueAdmin:
    """Operator methods of the queue (a base of :class:`worker.queue.worker_queue.WorkerQueue`)."""

    config: QueueConfig
    _clock: Callable[[], float]
    _storage: Storage
    _sweeping: asyncio.Lock
    _history_pruned_at: float = float("-inf")
    notifier: Notifier
    cancels: Notifier

    # -- operators -----------------------------------------------------------------------

    async def hold(self, task_id: str) -> None:
        """Keep a pending task from being claimed until :meth:`unhold`."""
        arguments.text("task_id", task_id)
        await self._storage.hold(task_id, self._clock())

    async def unhold(self, task_id: str) -> None:
        arguments.text("task_id", task_id)
        await self._storage.unhold(task_id, self._clock())

    async def run_now(self, task_id: str) -> None:
        """Make a pending task due now (a delayed or backed-off one): its ``schedule_at``
        moves to now. It still waits for its turn, its dependencies and an unheld state."""
        arguments.text("task_id", task_id)
        await self._storage.run_now(task_id, self._clock())
        self.notifier.notify()

    async def pause_queue(self, queue: str) -> None:
        """Claim nothing from ``queue`` until :meth:`unpause_queue` (kept in the database)."""
        await self._storage.pause_queue(arguments.queue_name("queue", queue), self._clock())

    async def unpause_queue(self, queue: str) -> bool:
        """Resume claiming from ``queue``; False if it was not paused."""
        return await self._storage.unpause_queue(arguments.queue_name("queue", queue))

    async def paused_queues(self) -> dict[str, float]:
        """Paused queue names and when they were paused."""
        return await self._storage.paused()

    async def queue_position(self, task_id: str) -> int:
        """How many claimable tasks of its queue would be claimed before this pending task."""
        arguments.text("task_id", task_id)
        task = await self.get_task(task_id)
        return await self._storage.position(task.id, task.queue, task.priority, self._clock())

    async def why(self, task_id: str) -> str:
        """One line on why a task is not running (or what it is doing)."""
        arguments.text("task_id", task_id)
        task = await self.get_task(task_id)
        now = self._clock()
        if task.state is TaskState.PENDING:
            paused = await self._storage.paused()
            blockers = await self._storage.unfinished_dependencies(task.id)
            position = await self._storage.position(task.id, task.queue, task.priority, now)
            return explain_pending(task, now, paused, blockers, position)
        return explain(task, now)

    async def dependents(self, task_id: str) -> list[tuple[str, str]]:
        """``(id, state)`` of each task that depends on this one (its downstream), in id
        order; a task's own ``depends_on`` names its upstream."""
        return await self._storage.dependents(arguments.text("task_id", task_id))

    # -- workers and statistics ----------------------------------------------------------

    async def register_worker(self, info: Mapping[str, Any]) -> None:
        now = self._clock()
        await self._storage.register_worker({**info, "started_at": now, "heartbeat_at": now})

    async def worker_heartbeat(self, worker_id: str, *, stopped: bool = False) -> None:
        arguments.text("worker_id", worker_id)
        await self._storage.worker_heartbeat(worker_id, self._clock(), stopped=stopped)

    async def worker_alive(
        self, worker_id: str, leases: Sequence[tuple[str, str]] = ()
    ) -> LeaseReport | None:
        """A registered worker's liveness beat: records it alive and reports which of its
        running ``(task_id, lease_id)`` claims were lost or asked to stop. None when the
        worker has no row (pruned after a long silence): register it again."""
        return await self._storage.worker_alive(worker_id, self._clock(), leases)

    async def lease_report(self, leases: Sequence[tuple[str, str]]) -> LeaseReport:
        """Which running ``(task_id, lease_id)`` claims were lost or asked to stop (a read)."""
        return await self._storage.lease_report(leases)

    async def live_workers(self, within_s: float | None = None) -> list[dict[str, Any]]:
        """Workers that sent a heartbeat within ``within_s`` (default: the config's
        ``worker_dead_after``) and did not stop."""
        window = self.config.worker_dead_after if within_s is None else within_s
        arguments.seconds("within_s", window)
        return await self._storage.live_workers(self._clock() - window)

    async def get_statistics(self, window_s: float = 300.0) -> dict[str, Any]:
        """Counts per state and queue, and figures over tasks finished in the last window."""
        arguments.seconds("window_s", window_s)
        now = self._clock()
        counts = await self.get_queue_stats()
        recent = await self._storage.window(now - window_s)
        workers = await self.live_workers()
        oldest = recent.pop("oldest_pending_at")
        return {
            "states": counts,
            "queues": recent.pop("queues"),
            "window_s": window_s,
            "throughput_per_s": recent["completed"] / window_s,
            **recent,
            "oldest_pending_age_s": None if oldest is None else max(0.0, now - oldest),
            "workers_alive": len(workers),
            "workers": workers,
        }

    # -- the sweep -----------------------------------------------------------------------

    async def retry(
        self,
        size: int | None = None,
        visibility_timeout: float | None = None,
        max_attempts: int | None = None,
    ) -> list[Task]:
        """Return the tasks of dead workers and expired leases, requeue retryable tasks after
        backoff, discard exhausted ones.

        A registered worker (:class:`~worker.Worker`) whose heartbeat is older than the
        config's ``worker_dead_after`` is dead: its running tasks come back at once, whatever
        their visibility timeout.

        ``visibility_timeout`` (when given) counts a lease as expired that many seconds after
        its last claim or renewal; ``max_attempts`` replaces the config default for tasks
        that set none. Returns the tasks it moved, in their new state.
        """
        size = self.config.batch_size if size is None else arguments.count("size", size)
        if visibility_timeout is not None:
            arguments.seconds("visibility_timeout", visibility_timeout)
        limit = (
            self.config.default_max_attempts
            if max_attempts is None
            else arguments.attempts("max_attempts", max_attempts)
        )
        config = self.config
        # One sweep of this process at a time: two at once on PostgreSQL would each skip the
        # rows the other locked, and a burst worker's last sweep could find nothing while
        # the sweeper's, not yet committed, holds the task it would then have claimed.
        async with self._sweeping:
            now = self._clock()

            def plan(
                attempt: int,
                created_at: float,
                policy: RetryPolicy | None,
                requested: float | None,
            ) -> float | None:
                return next_attempt_at(
                    attempt=attempt,
                    now=now,
                    created_at=created_at,
                    policy=policy,
                    requested_delay_s=requested,
                    base_delay_s=config.retry_base_delay,
                    multiplier=config.retry_backoff_multiplier,
                    max_delay_s=config.max_retry_delay,
                )

            if now - self._history_pruned_at >= HISTORY_PRUNE_EVERY_S:
                self._history_pruned_at = now
                await self._storage.prune_history(now)
            return await self._storage.sweep(
                size,
                now,
                visibility_timeout=visibility_timeout,
                max_attempts=limit,
                plan=plan,
                dead_before=now - config.worker_dead_after,
            )

    # -- reads and retention -------------------------------------------------------------

    async def get_task(self, task_id: str) -> Task:
        return await self._storage.get(arguments.text("task_id", task_id))

    async def list_tasks(
        self,
        state: TaskState | str | None = None,
        queue: str | None = None,
        limit: int = 100,
        after_id: str | None = None,
        *,
        kind: str | None = None,
        name: str | None = None,
        error: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
        after_priority: int | None = None,
    ) -> list[Task]:
        """Tasks in id (enqueue) order, pending ones (``state="pending"``) in the order
        workers claim them (higher priority first, then id); pass the last task's id as
        ``after_id`` for the next page, and for pending tasks its ``priority`` as
        ``after_priority`` too: then a task whose priority changed since (a retry with
        ``RetryPolicy(priority_step=...)``) does not move where the next page starts.
        Without it, the ``after_id`` task's priority now is taken (it must still exist).

        Every filter given must match (:class:`~worker.core.selection.TaskFilter`): ``kind``
        an item's request kind, ``name`` the task's name, ``error`` a piece of its last
        error (any case), ``created_after <= created_at < created_before``."""
        arguments.count("limit", limit, high=arguments.MAX_PAGE)
        arguments.optional_text("after_id", after_id)
        if after_id is not None and not is_ulid(after_id):
            raise InvalidInputError(
                f"after_id: a task id (a ULID: 26 characters of Crockford base32), got {after_id!r}"
            )
        if after_priority is not None:
            arguments.count("after_priority", after_priority, low=MIN_PRIORITY, high=MAX_PRIORITY)
        chosen = task_filter(
            state=state,
            queue=queue,
            kind=kind,
            name=name,
            error=error,
            created_after=created_after,
            created_before=created_before,
        )
        pending = chosen.state is TaskState.PENDING
        if after_priority is not None and (after_id is None or not pending):
            raise InvalidInputError(
                "after_priority: only with state='pending' and after_id (a page of pending "
                "tasks goes on from that task's place)"
            )
        return await self._storage.list_tasks(
            chosen, limit=limit, after_id=after_id, after_priority=after_priority
        )

    async def count_tasks(self, chosen: TaskFilter | None = None) -> int:
        """How many tasks ``chosen`` matches (what a bulk action on it would look at)."""
        return await self._storage.count_tasks(_checked(chosen or TaskFilter()))

    async def act_on_tasks(
        self,
        action: BulkAction | str,
        *,
        ids: Sequence[str] | None = None,
        selection: TaskFilter | None = None,
    ) -> BulkOutcome:
        """Cancel, resume, run now, hold or release many tasks: those ``ids`` names (at most
        :data:`MAX_BULK_IDS`, in one transaction: all their moves or none), or every task
        ``selection`` matches (in batches of a thousand, each its own transaction).

        Each task moves as the single action would move it (:meth:`mark_as_cancelled`,
        :meth:`mark_as_resume` or :meth:`unhold`, :meth:`run_now`, :meth:`hold`,
        :meth:`unhold`); one whose state does not allow it, or that has nothing to change
        (a held task held again, a due task run now), is skipped and counted."""
        if action not in BULK_ACTIONS:
            raise InvalidInputError(
                f"unknown action {action!r}; actions are {', '.join(BULK_ACTIONS)}"
            )
        if ids is not None and selection is not None:
            raise InvalidInputError("give either ids or a selection (a filter), not both")
        if ids is None and selection is None:
            raise InvalidInputError(
                "give the tasks to act on: ids, or a selection (a filter; TaskFilter() is "
                "every task)"
            )
        if ids is not None:
            if isinstance(ids, str):
                raise InvalidInputError("ids must be a list of task ids, not a string")
            if len(ids) > MAX_BULK_IDS:
                raise InvalidInputError(f"ids: at most {MAX_BULK_IDS} tasks, got {len(ids)}")
            ids = [arguments.text(f"ids[{i}]", task_id) for i, task_id in enumerate(ids)]
        chosen = None if selection is None else _checked(selection)
        outcome = await self._storage.bulk_move(
            action,
            ids=ids,
            chosen=chosen,
            now=self._clock(),
            default_max_attempts=self.config.default_max_attempts,
        )
        if outcome.changed and action in ("resume", "release", "run_now"):
            self.notifier.notify()
        if outcome.cancel_requested:
            self.cancels.notify()
        return outcome

    async def get_queue_stats(self, queue: str | None = None) -> dict[str, int]:
        """Count per state (lower-case names, every state present) and ``total``."""
        if queue is not None:
            arguments.queue_name("queue", queue)
        counts = await self._storage.count_by_state(queue)
        stats = {state.value: counts.get(state.value, 0) for state in TaskState}
        stats["total"] = sum(stats.values())
        return stats

    async def queue_figures(self) -> QueueFigures:
        """Per queue: tasks per state and the oldest pending task's ``created_at`` (what a
        dashboard or a metrics scrape reads; every state is counted through its index)."""
        return await self._storage.queue_figures()

    async def history(self, window: str = "hour", queue: str | None = None) -> list[HistoryPoint]:
        """Acknowledgements from the persisted history over the last ``hour`` (a point per
        minute) or ``day`` (a point per 15 minutes), of one queue or all: tasks finished per
        outcome and processing-time p50/p95 (estimated, see :mod:`worker.storage.history`)."""
        if window not in HISTORY_WINDOWS:
            raise InvalidInputError(
                f"window must be one of {', '.join(HISTORY_WINDOWS)}, got {window!r}"
            )
        if queue is not None:
            arguments.queue_name("queue", queue)
        span_s, step_minutes = HISTORY_WINDOWS[window]
        now = self._clock()
        since = (now - span_s) // (step_minutes * 60) * step_minutes * 60 + step_minutes * 60
        return await self._storage.history_series(queue, since, now, step_minutes)

    async def history_totals(self) -> HistoryTotals:
        """Acknowledgements per queue and outcome over the kept history (two days)."""
        return await self._storage.history_totals()

    async def purge(
        self, older_than_s: float, states: Iterable[TaskState | str] = TERMINAL_STATES
    ) -> int:
        """Delete terminal tasks finished more than ``older_than_s`` ago (with their dependency
        edges, webhook deliveries and callbacks); returns how many.

        Then the ``worker.purge_hooks`` entry points delete what packages wrote for those tasks
        elsewhere (:mod:`worker.queue.purge_hooks`); a hook that fails is logged, the purge
        stands.
        """
        arguments.seconds("older_than_s", older_than_s, zero=True, high=MAX_INSTANT)
        if isinstance(states, str | TaskState):
            states = [states]
        chosen = [_state(s) for s in states]
        live = [s.value for s in chosen if s not in TERMINAL_STATES]
        if live:
            raise InvalidInputError(f"purge deletes only terminal tasks, not {', '.join(live)}")
        if not chosen:
            return 0
        ids = await self._storage.purge(self._clock() - older_than_s, chosen)
        from worker.queue.purge_hooks import run_purge_hooks

        await run_purge_hooks(self.config, ids)
        return len(ids)

    # -- webhooks (worker.webhooks; kept apart from the queue's own operations) -----------

    async def webhook_deliveries(self, task_id: str) -> list[WebhookDelivery]:
        """The webhook deliveries of a task's items: state, attempts, last error and status
        (empty until the task has ended and the delivery loop has seen it)."""
        arguments.text("task_id", task_id)
        return await self._storage.webhook_deliveries(task_id)

    async def task_callbacks(self, task_id: str) -> list[TaskCallback]:
        """The runs of a task's ``on_success`` / ``on_failure`` callback, one per ending of
        the task: state, attempts and last error (empty until the task has ended and a
        worker's callback loop has seen it)."""
        arguments.text("task_id", task_id)
        return await self._storage.task_callbacks(task_id)


def task_filter(
    *,
    state: TaskState | str | None = None,
    queue: str | None = None,
    kind: str | None = None,
    name: str | None = None,
    error: str | None = None,
    created_after: float | None = None,
    created_before: float | None = None,
) -> TaskFilter:
    """A checked :class:`~worker.core.selection.TaskFilter` (a refusal names the field)."""
    return _checked(
        TaskFilter(
            state=None if state is None else _state(state),
            queue=queue,
            kind=kind,
            name=name,
            error=error,
            created_after=created_after,
            created_before=created_before,
        )
    )


def _checked(chosen: TaskFilter) -> TaskFilter:
    if chosen.state is not None:
        chosen = replace(chosen, state=_state(chosen.state))
    if chosen.queue is not None:
        arguments.queue_name("queue", chosen.queue)
    for field in ("kind", "name", "error"):
        arguments.optional_text(field, getattr(chosen, field))
    for field in ("created_after", "created_before"):
        value = getattr(chosen, field)
        if value is not None:
            arguments.seconds(field, value, zero=True, high=MAX_INSTANT)
    return chosen


def _state(value: TaskState | str) -> TaskState:
    try:
        return TaskState(value)
    except ValueError:
        names = ", ".join(s.value for s in TaskState)
        raise InvalidInputError(f"unknown state {value!r}; states are {names}") from None

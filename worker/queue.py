"""``WorkerQueue``: the public API. Validates at the edge, reads the clock, delegates SQL."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from pydantic import JsonValue, ValidationError

from worker.backoff import next_attempt_at
from worker.config import QueueConfig
from worker.control import ControlStore, Heartbeat
from worker.db import Database
from worker.errors import InvalidInputError, InvalidTaskError, UnknownRequestKindError
from worker.explain import explain, explain_pending
from worker.ids import new_ids
from worker.models import Completion, Failure, Progress, Resources, RetryPolicy, Task
from worker.reads import ReadStore
from worker.rows import insert_values, items_json
from worker.states import TERMINAL_STATES, TaskState
from worker.store import TaskStore
from worker.sweep import SweepStore
from worker.wakeup import Notifier

if TYPE_CHECKING:
    from worker.webhooks.models import WebhookDelivery

log = logging.getLogger(__name__)

Clock = Callable[[], float]


def _validated(index: int, task: Task | Mapping[str, Any]) -> Task:
    try:
        checked = task if isinstance(task, Task) else Task.model_validate(task)
    except ValidationError as exc:
        problems = "; ".join(
            f"tasks[{index}]{''.join(_loc(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        raise InvalidTaskError(problems) from exc
    if checked.state is not TaskState.PENDING:
        raise InvalidTaskError(
            f"tasks[{index}].state: a new task must be pending, got {checked.state.value}"
        )
    return checked


def _loc(part: int | str) -> str:
    return f"[{part}]" if isinstance(part, int) else f".{part}"


def _delay(delay_s: float | None) -> None:
    if delay_s is not None and not (math.isfinite(delay_s) and delay_s >= 0):
        raise InvalidInputError(f"delay_s must be a finite number >= 0, got {delay_s}")


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise InvalidInputError(f"{name} must be > 0, got {value}")


class WorkerQueue:
    """A durable task queue on one database. Open with ``initialize()`` or ``async with``."""

    def __init__(
        self,
        config: QueueConfig | None = None,
        *,
        worker_id: str | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.config = config if config is not None else QueueConfig()
        self.worker_id = worker_id
        self._clock = clock
        self._db = Database(self.config)
        self._store = TaskStore(self._db, self.config.default_visibility_timeout)
        self._reads = ReadStore(self._db)
        self._sweep = SweepStore(self._db)
        self._control = ControlStore(self._db, self.config.default_visibility_timeout)
        #: Poked after every enqueue that inserted something: wakes this process's workers.
        self.notifier = Notifier()

    # -- lifecycle -----------------------------------------------------------------------

    async def initialize(self) -> None:
        """Connect and bring the database to the newest schema revision."""
        from worker.migrate import upgrade_to_head  # Alembic is heavy: load it when needed

        await self._db.open()
        try:
            async with self._db.write("schema upgrade") as conn:
                await conn.run_sync(upgrade_to_head)
        except BaseException:
            await self._db.close()
            raise

    async def close(self) -> None:
        await self._db.close()

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
        checked = [_validated(index, task) for index, task in enumerate(tasks)]
        now = self._clock()
        fresh_ids = iter(new_ids(sum(1 for task in checked if not task.id)))
        rows = []
        for index, task in enumerate(checked):
            try:
                items = items_json(task.items)
            except UnknownRequestKindError as exc:
                raise InvalidTaskError(f"tasks[{index}].items: {exc}") from exc
            # Known-good values, set without re-running validation (enqueue's hot path).
            fields = task.__dict__
            if not task.id:
                fields["id"] = next(fresh_ids)
            for name in ("created_at", "updated_at", "schedule_at"):
                if not fields[name]:
                    fields[name] = now
            rows.append(insert_values(task, items))
        if not rows:
            return 0
        ids, inserted = await self._store.insert(rows, now)
        for task, task_id in zip(checked, ids, strict=True):
            task.__dict__["id"] = task_id
        if inserted:
            self.notifier.notify()
        return inserted

    # -- consuming -----------------------------------------------------------------------

    async def dequeue(
        self,
        size: int | None = None,
        queues: Sequence[str] | None = None,
        resources: Resources | None = None,
    ) -> list[Task]:
        """Claim up to ``size`` due tasks (default: the config's batch size).

        ``resources`` is what the caller has free: only tasks whose declared needs fit in it
        together are claimed.
        """
        size = self.config.batch_size if size is None else size
        _positive("size", size)
        return await self._store.claim(size, self._clock(), queues, self.worker_id, resources)

    async def any_due(
        self, queues: Sequence[str] | None = None, resources: Resources | None = None
    ) -> bool:
        """Whether a task is claimable now (due, not held, not waiting, queue not paused, and
        each on its own fitting ``resources`` when given)."""
        return await self._store.any_due(self._clock(), queues, resources)

    async def mark_as_complete(
        self, task_id: str, *, lease_id: str | None = None, results: list[JsonValue] | None = None
    ) -> None:
        """PROCESSING -> COMPLETED. With ``lease_id``, a stale lease raises ``LeaseLostError``."""
        await self._store.complete(
            [Completion(task_id, lease_id, results)], self._clock(), strict=True
        )

    async def complete_many(self, completions: Sequence[Completion]) -> list[str]:
        """Complete many claimed tasks in one transaction; returns the ids refused."""
        return await self._store.complete(completions, self._clock(), strict=False)

    async def mark_as_retry(
        self,
        task_id: str,
        error: str,
        *,
        lease_id: str | None = None,
        delay_s: float | None = None,
    ) -> None:
        """PROCESSING -> RETRYABLE; the next sweep requeues it after backoff (or ``delay_s``).

        A task whose cancel was requested during this run ends CANCELLED instead.
        """
        _delay(delay_s)
        await self._store.fail(
            "retry", [Failure(task_id, error, lease_id, delay_s)], self._clock(), strict=True
        )

    async def discard_many(self, failures: Sequence[Failure]) -> list[str]:
        """Discard many claimed tasks in one transaction; returns the ids refused."""
        return await self._store.fail("discard", failures, self._clock(), strict=False)

    async def retry_many(self, failures: Sequence[Failure]) -> list[str]:
        """Mark many claimed tasks retryable in one transaction; returns the ids refused."""
        for failure in failures:
            _delay(failure.delay_s)
        return await self._store.fail("retry", failures, self._clock(), strict=False)

    async def mark_as_discarded(
        self, task_id: str, error: str | None = None, *, lease_id: str | None = None
    ) -> None:
        """PROCESSING -> DISCARDED: failed for good, no more attempts."""
        reason = error if error is not None else "discarded"
        await self._store.fail(
            "discard", [Failure(task_id, reason, lease_id)], self._clock(), strict=True
        )

    async def mark_as_cancelled(
        self, task_id: str, *, lease_id: str | None = None, reason: str | None = None
    ) -> TaskState:
        """Cancel a task; returns its state afterwards.

        PENDING or RETRYABLE tasks end CANCELLED at once. A PROCESSING task is asked to stop:
        it stays PROCESSING (with ``cancel_requested_at`` set) until its worker, which
        notices at its next heartbeat, stops the handler and calls this again with its
        ``lease_id`` to end it CANCELLED; a task whose worker died ends CANCELLED when its
        lease expires.
        """
        now = self._clock()
        if lease_id is not None:
            values: dict[str, Any] = {
                "finished_at": now,
                "updated_at": now,
                "lease_expires_at": None,
            }
            if reason is not None:
                values["last_error"] = reason
            await self._store.transition("cancel_running", task_id, values, lease_id=lease_id)
            return TaskState.CANCELLED
        return await self._store.cancel(task_id, now, reason)

    async def mark_as_resume(self, task_id: str) -> None:
        """DISCARDED -> PENDING, due now, with at least one more attempt."""
        await self._store.resume(task_id, self._clock(), self.config.default_max_attempts)

    async def extend_lease(
        self, task_id: str, lease_id: str, seconds: float | None = None
    ) -> float:
        """Renew a claim's lease (heartbeat); returns the new ``lease_expires_at``."""
        if seconds is not None:
            _positive("seconds", seconds)
        return await self._store.extend_lease(task_id, lease_id, self._clock(), seconds)

    async def heartbeat(
        self, leases: Sequence[tuple[str, str]], seconds: float | None = None
    ) -> Heartbeat:
        """Renew many ``(task_id, lease_id)`` leases at once; reports lost leases and cancels."""
        if seconds is not None:
            _positive("seconds", seconds)
        return await self._control.heartbeat(leases, self._clock(), seconds)

    async def release(self, leases: Sequence[tuple[str, str]]) -> list[str]:
        """Give claimed tasks back (graceful shutdown): PENDING, due now, attempt not used."""
        return await self._store.release(leases, self._clock())

    async def set_progress(
        self,
        task_id: str,
        lease_id: str,
        current: float,
        total: float | None = None,
        message: str | None = None,
    ) -> Progress:
        """Record a running task's progress (fenced by its lease)."""
        progress = Progress(current=current, total=total, message=message, at=self._clock())
        await self._store.transition(
            "progress",
            task_id,
            {"progress": progress.model_dump(), "updated_at": progress.at},
            lease_id=lease_id,
        )
        return progress

    async def save_checkpoint(self, task_id: str, lease_id: str, data: JsonValue) -> None:
        """Keep ``data`` with the task; a later attempt reads it back as ``task.checkpoint``."""
        await self._store.transition(
            "progress",
            task_id,
            {"checkpoint": data, "updated_at": self._clock()},
            lease_id=lease_id,
        )

    # -- operators -----------------------------------------------------------------------

    async def hold(self, task_id: str) -> None:
        """Keep a pending task from being claimed until :meth:`unhold`."""
        await self._store.transition("hold", task_id, {"held": True, "updated_at": self._clock()})

    async def unhold(self, task_id: str) -> None:
        await self._store.transition(
            "unhold", task_id, {"held": False, "updated_at": self._clock()}
        )

    async def pause_queue(self, queue: str) -> None:
        """Claim nothing from ``queue`` until :meth:`unpause_queue` (kept in the database)."""
        await self._control.pause_queue(queue, self._clock())

    async def unpause_queue(self, queue: str) -> bool:
        """Resume claiming from ``queue``; False if it was not paused."""
        return await self._control.unpause_queue(queue)

    async def paused_queues(self) -> dict[str, float]:
        """Paused queue names and when they were paused."""
        return await self._control.paused()

    async def queue_position(self, task_id: str) -> int:
        """How many claimable tasks of its queue would be claimed before this pending task."""
        task = await self.get_task(task_id)
        return await self._control.position(task.id, task.queue, task.priority, self._clock())

    async def why(self, task_id: str) -> str:
        """One line on why a task is not running (or what it is doing)."""
        task = await self.get_task(task_id)
        now = self._clock()
        if task.state is TaskState.PENDING:
            paused = await self._control.paused()
            blockers = await self._control.unfinished_dependencies(task.id)
            position = await self._control.position(task.id, task.queue, task.priority, now)
            return explain_pending(task, now, paused, blockers, position)
        return explain(task, now)

    # -- workers and statistics ----------------------------------------------------------

    async def register_worker(self, info: Mapping[str, Any]) -> None:
        now = self._clock()
        await self._control.register_worker({**info, "started_at": now, "heartbeat_at": now})

    async def worker_heartbeat(self, worker_id: str, *, stopped: bool = False) -> None:
        await self._control.worker_heartbeat(worker_id, self._clock(), stopped=stopped)

    async def live_workers(self, within_s: float = 30.0) -> list[dict[str, Any]]:
        return await self._control.live_workers(self._clock() - within_s)

    async def get_statistics(self, window_s: float = 300.0) -> dict[str, Any]:
        """Counts per state and queue, and figures over tasks finished in the last window."""
        _positive("window_s", window_s)
        now = self._clock()
        counts = await self.get_queue_stats()
        recent = await self._control.window(now - window_s)
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
        """Return expired leases, requeue retryable tasks after backoff, discard exhausted ones.

        ``visibility_timeout`` (when given) counts a lease as expired that many seconds after
        its last claim or renewal; ``max_attempts`` replaces the config default for tasks
        that set none. Returns the tasks it moved, in their new state.
        """
        size = self.config.batch_size if size is None else size
        _positive("size", size)
        if visibility_timeout is not None:
            _positive("visibility_timeout", visibility_timeout)
        limit = self.config.default_max_attempts if max_attempts is None else max_attempts
        _positive("max_attempts", limit)
        config = self.config
        now = self._clock()

        def plan(
            attempt: int, created_at: float, policy: RetryPolicy | None, requested: float | None
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

        return await self._sweep.sweep(
            size, now, visibility_timeout=visibility_timeout, max_attempts=limit, plan=plan
        )

    # -- reads and retention -------------------------------------------------------------

    async def get_task(self, task_id: str) -> Task:
        return await self._reads.get(task_id)

    async def list_tasks(
        self,
        state: TaskState | str | None = None,
        queue: str | None = None,
        limit: int = 100,
        after_id: str | None = None,
    ) -> list[Task]:
        """Tasks in id (enqueue) order; pass the last id as ``after_id`` for the next page."""
        _positive("limit", limit)
        chosen = None if state is None else _state(state)
        return await self._reads.list(state=chosen, queue=queue, limit=limit, after_id=after_id)

    async def get_queue_stats(self, queue: str | None = None) -> dict[str, int]:
        """Count per state (lower-case names, every state present) and ``total``."""
        counts = await self._reads.count_by_state(queue)
        stats = {state.value: counts.get(state.value, 0) for state in TaskState}
        stats["total"] = sum(stats.values())
        return stats

    async def purge(
        self, older_than_s: float, states: Iterable[TaskState | str] = TERMINAL_STATES
    ) -> int:
        """Delete terminal tasks finished more than ``older_than_s`` ago; returns how many."""
        if older_than_s < 0:
            raise InvalidInputError(f"older_than_s must be >= 0, got {older_than_s}")
        chosen = [_state(s) for s in states]
        live = [s.value for s in chosen if s not in TERMINAL_STATES]
        if live:
            raise InvalidInputError(f"purge deletes only terminal tasks, not {', '.join(live)}")
        if not chosen:
            return 0
        return await self._control.purge(self._clock() - older_than_s, chosen)

    # -- webhooks (worker.webhooks; kept apart from the queue's own operations) -----------

    async def webhook_deliveries(self, task_id: str) -> list[WebhookDelivery]:
        """The webhook deliveries of a task's items: state, attempts, last error and status
        (empty until the task has ended and the delivery loop has seen it)."""
        from worker.webhooks.store import deliveries_for

        return await deliveries_for(self._db, task_id)


def _state(value: TaskState | str) -> TaskState:
    try:
        return TaskState(value)
    except ValueError:
        names = ", ".join(s.value for s in TaskState)
        raise InvalidInputError(f"unknown state {value!r}; states are {names}") from None

"""What the reads for people make of their rows: counts per state, the figures over a
window, workers, callbacks, paused queues, dependencies.

Each read's statement is built in its store (:mod:`worker.storage.reads`,
:mod:`worker.storage.control`, :mod:`worker.storage.outbox`); what its rows become is here,
where nothing needs SQLAlchemy, so that the read commands' path without it
(:mod:`worker.storage.sqlite.quick_reads`) gives exactly what the queue's own reads give.
Rows are plain sequences in the statement's column order.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from worker.core.callbacks import CallbackEvent, CallbackState, TaskCallback
from worker.core.errors import InvalidInputError
from worker.core.states import TaskState

#: The partial index that holds each state other than completed (counts go through it).
STATE_INDEXES = {
    TaskState.PENDING: "ix_tasks_claim",
    TaskState.PROCESSING: "ix_tasks_lease_expiry",
    TaskState.RETRYABLE: "ix_tasks_retryable",
    TaskState.DISCARDED: "ix_tasks_discarded",
    TaskState.CANCELLED: "ix_tasks_cancelled",
}

#: The most finished tasks the window's figures read (the newest).
WINDOW_ROWS = 100_000

_COMPLETED = TaskState.COMPLETED.value
_DISCARDED = TaskState.DISCARDED.value
_CANCELLED = TaskState.CANCELLED.value
_PENDING_CALLBACK = CallbackState.PENDING.value


def state_counts(row: Sequence[Any]) -> dict[str, int]:
    """Tasks per state from the backend's ``state_counts`` row: the total, then each state
    of :data:`STATE_INDEXES`; completed is the difference."""
    everything, *numbers = row
    counts = {s.value: int(n) for s, n in zip(STATE_INDEXES, numbers, strict=True)}
    counts[_COMPLETED] = int(everything) - sum(counts.values())
    return counts


def window(
    finished: Iterable[Sequence[Any]],
    oldest_pending: Any,
    per_queue: Iterable[Sequence[Any]],
) -> dict[str, Any]:
    """The figures over a window: ``finished`` rows of ``(state, duration, attempts)``
    (the tasks that finished in it), the oldest pending task's ``created_at`` and rows of
    ``(queue, state, count)``."""
    rows = list(finished)
    durations = sorted(float(d) for s, d, _ in rows if s == _COMPLETED and d is not None)
    completed = sum(1 for s, _, _ in rows if s == _COMPLETED)
    discarded = sum(1 for s, _, _ in rows if s == _DISCARDED)
    queues: dict[str, dict[str, int]] = {}
    for queue, state, count in per_queue:
        queues.setdefault(str(queue), {})[str(state)] = int(count)
    return {
        "completed": completed,
        "discarded": discarded,
        "cancelled": sum(1 for s, _, _ in rows if s == _CANCELLED),
        "retries": sum(max(int(n) - 1, 0) for _, _, n in rows),
        "avg_processing_s": statistics.fmean(durations) if durations else None,
        "p95_processing_s": _percentile(durations, 0.95),
        "success_rate": completed / (completed + discarded) if completed + discarded else None,
        "oldest_pending_at": None if oldest_pending is None else float(oldest_pending),
        "queues": queues,
    }


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    index = min(len(values) - 1, max(0, round(fraction * (len(values) - 1))))
    return values[index]


def live_workers(
    found: Iterable[Mapping[str, Any]], running: Iterable[Sequence[Any]]
) -> list[dict[str, Any]]:
    """Each worker row (by column name; ``queues`` as its JSON text) with ``running``, its
    count among the rows of ``(worker_id, count)``."""
    counts = {str(w): int(n) for w, n in running}
    workers = []
    for row in found:
        worker = dict(row)
        queues = worker.get("queues")
        worker["queues"] = None if queues is None else json.loads(queues)
        worker["running"] = counts.get(worker["id"], 0)
        workers.append(worker)
    return workers


def callback(row: Mapping[Any, Any]) -> TaskCallback:
    """A row of ``task_callbacks`` (by column name) as a :class:`TaskCallback`."""
    pending = row["state"] == _PENDING_CALLBACK
    return TaskCallback(
        task_id=row["task_id"],
        event=CallbackEvent(row["event"]),
        target=row["target"],
        state=CallbackState(row["state"]),
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"] if pending else None,
        last_error=row["last_error"],
        done_at=row["done_at"],
        finished_at=row["finished_at"],
        ending=row["ending"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def paused(rows: Iterable[Sequence[Any]]) -> dict[str, float]:
    """Rows of ``(queue, paused_at)`` by queue."""
    return {str(queue): float(at) for queue, at in rows}


def id_states(rows: Iterable[Sequence[Any]]) -> list[tuple[str, str]]:
    """Rows of ``(task id, state)`` as pairs of text."""
    return [(str(task_id), str(state)) for task_id, state in rows]


def after_priority(task_id: str, priority: Any) -> int:
    """The priority :func:`worker.storage.reads.priority_of` found for the task a page of
    pending tasks follows, or ``InvalidInputError`` when it is gone."""
    if priority is None:
        raise InvalidInputError(
            f"after_id: task {task_id!r} is gone, so its place among the pending tasks is "
            "unknown; pass after_priority (its priority on the last page) with it"
        )
    return int(priority)

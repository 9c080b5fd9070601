"""``why``: one line on what a task is waiting for. Pure: takes the facts and ``now``."""

from __future__ import annotations

from datetime import UTC, datetime

from worker.core.models import Task
from worker.core.states import TaskState


def _at(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def explain_pending(
    task: Task,
    now: float,
    paused: dict[str, float],
    blockers: list[tuple[str, str]],
    position: int,
) -> str:
    """Why a pending task is not running: the first reason a claim would skip it."""
    if task.held:
        return "held: resume it to let it run"
    if task.queue in paused:
        return f"queue {task.queue!r} is paused (since {_at(paused[task.queue])})"
    if blockers:
        listed = ", ".join(f"{dep} ({state})" for dep, state in blockers)
        return (
            f"waiting on {len(blockers)} dependenc{'y' if len(blockers) == 1 else 'ies'}: {listed}"
        )
    if task.schedule_at > now:
        return f"not due until {_at(task.schedule_at)} (in {task.schedule_at - now:.0f} s)"
    if position == 0:
        return f"next in queue {task.queue!r}: waiting for a free worker"
    return f"position {position + 1} in queue {task.queue!r}: {position} claimable task(s) ahead"


def explain(task: Task, now: float) -> str:
    """What a task that is not pending is doing, or how it ended."""
    if task.state is TaskState.PROCESSING:
        until = "" if task.lease_expires_at is None else f" until {_at(task.lease_expires_at)}"
        asked = " (cancel requested)" if task.cancel_requested_at is not None else ""
        return f"running: leased by worker {task.worker_id or '?'}{until}{asked}"
    if task.state is TaskState.RETRYABLE:
        return (
            f"attempt {task.attempt_count} failed ({task.last_error}); waiting for the retry sweep"
        )
    ended = "" if task.finished_at is None else f" at {_at(task.finished_at)}"
    detail = (
        f": {task.last_error}" if task.last_error and task.state is not TaskState.COMPLETED else ""
    )
    return f"{task.state.value}{ended}{detail}"

"""Worker events and their callbacks (run in the worker process, never breaking its loop)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from pydantic import JsonValue

from worker.core.models import Progress, Task

log = logging.getLogger(__name__)

EVENTS: Final = (
    "task_started",
    "task_progress",
    "task_completed",
    "task_retry",
    "task_failed",
    "task_cancelled",
)


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """``name`` happened to ``task`` (the task as claimed); the other fields as they apply."""

    name: str
    task: Task
    results: list[JsonValue] | None = None
    error: str | None = None
    delay_s: float | None = None
    progress: Progress | None = None


Callback = Callable[[TaskEvent], Awaitable[None] | None]


class EventBus:
    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callback]] = {name: [] for name in EVENTS}
        self._pending: set[asyncio.Task[None]] = set()

    def register(self, event: str, callback: Callback) -> None:
        if event not in self._callbacks:
            raise ValueError(f"unknown event {event!r}; events are {', '.join(EVENTS)}")
        self._callbacks[event].append(callback)

    def emit(self, name: str, task: Task, **fields: object) -> None:
        callbacks = self._callbacks[name]
        if not callbacks:
            return
        event = TaskEvent(name, task, **fields)  # type: ignore[arg-type]
        for callback in callbacks:
            try:
                outcome = callback(event)
            except Exception:
                log.exception("%s callback %r failed for task %s", name, callback, task.id)
                continue
            if inspect.isawaitable(outcome):
                job = asyncio.ensure_future(self._guard(name, callback, task, outcome))
                self._pending.add(job)
                job.add_done_callback(self._pending.discard)

    @staticmethod
    async def _guard(name: str, callback: Callback, task: Task, outcome: Awaitable[None]) -> None:
        try:
            await outcome
        except Exception:
            log.exception("%s callback %r failed for task %s", name, callback, task.id)

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) for async callbacks still running."""
        if self._pending:
            _, late = await asyncio.wait(set(self._pending), timeout=timeout_s)
            for job in late:
                log.warning("an event callback still ran after %s s; cancelling it", timeout_s)
                job.cancel()

"""How the demo shows its tasks: a live table on a terminal, one line per change elsewhere.

On a terminal the table redraws in place with a progress bar per task (from ``task.progress``).
When the output is a file or a CI log, a live display would be noise, so each change of a
task's state or progress prints one plain line instead, and the table is printed once at the end.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from tts.requests import AudioRequest, TextToSpeechRequest
from worker import Task, TaskState

_STYLES = {
    TaskState.PENDING: "dim",
    TaskState.PROCESSING: "cyan",
    TaskState.RETRYABLE: "yellow",
    TaskState.COMPLETED: "green",
    TaskState.DISCARDED: "red",
    TaskState.CANCELLED: "red",
}


def describe(task: Task) -> str:
    """What a task does, in a few words (its first item)."""
    request = task.items[0].request
    if isinstance(request, TextToSpeechRequest):
        extra = "" if request.output_format == "wav" else f" -> {request.output_format}"
        return f"{request.voice_id}{extra}"
    if isinstance(request, AudioRequest):
        return "audio: " + ", ".join(op.op for op in request.operations)
    return type(request).__name__


def progress_of(task: Task) -> tuple[float, float | None, str]:
    """How far (current, total) and what the handler last said; finished tasks are full."""
    progress = task.progress
    if task.state is TaskState.COMPLETED:
        total = progress.total if progress is not None and progress.total else 1.0
        return total, total, "done"
    if progress is None:
        return 0.0, None, ""
    return progress.current, progress.total, progress.message or ""


def note(task: Task) -> str:
    """The last column: an error, the handler's message, or what came out."""
    if task.state in (TaskState.DISCARDED, TaskState.CANCELLED, TaskState.RETRYABLE):
        return task.last_error or ""
    if task.state is TaskState.COMPLETED:
        result: Any = task.items[-1].result
        if isinstance(result, dict):
            record = result.get("output", result) or {}
            if "duration_s" in record:
                return f"{record['duration_s']:.1f} s of {record['format']}"
            return "analyzed"
        return "done"
    return progress_of(task)[2]


class Board:
    """The tasks' display; ``update(tasks)`` after each poll, inside ``with board:``."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live_mode = console.is_terminal
        self._live: Live | None = None
        self._seen: dict[str, tuple[TaskState, float]] = {}
        self._started = time.monotonic()

    def __enter__(self) -> Board:
        if self.live_mode:
            self._live = Live(console=self.console, refresh_per_second=8, transient=False)
            self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, traceback)
            self._live = None

    def update(self, tasks: Sequence[Task]) -> None:
        if self._live is not None:
            self._live.update(self.table(tasks))
            return
        for task in tasks:
            current, total, message = progress_of(task)
            key = (task.state, current)
            if self._seen.get(task.id) == key:
                continue
            self._seen[task.id] = key
            amount = f"{current:g}/{total:g}" if total else ""
            detail = note(task) if task.state is not TaskState.PROCESSING else message
            self.console.print(
                f"{time.monotonic() - self._started:6.1f}s  {task.name or task.id:<14} "
                f"{task.state.value:<10} {amount:<6} {detail}",
                highlight=False,
                markup=False,
            )

    def finish(self, tasks: Sequence[Task]) -> None:
        """The final picture: the live table's last frame, or the table printed once."""
        if self._live is not None:
            self._live.update(self.table(tasks), refresh=True)
        else:
            self.console.print(self.table(tasks))

    def table(self, tasks: Sequence[Task]) -> Table:
        table = Table(title="tasks", title_justify="left", expand=False)
        table.add_column("task")
        table.add_column("what")
        table.add_column("state")
        table.add_column("progress")
        table.add_column("", overflow="fold")
        for task in tasks:
            current, total, _ = progress_of(task)
            bar = ProgressBar(total=total, completed=current, width=16)
            amount = f" {current:g}/{total:g}" if total else ""
            grid = Table.grid()
            grid.add_row(bar, amount)
            table.add_row(
                Text(task.name or task.id),
                Text(describe(task)),
                Text(task.state.value, style=_STYLES[task.state]),
                grid,
                Text(note(task)),
            )
        return table

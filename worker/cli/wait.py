"""``submit --wait``: poll a task until it ends, with a live progress bar on a terminal."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from worker.cli import render
from worker.core.models import Task
from worker.core.states import TERMINAL_STATES
from worker.queue.worker_queue import WorkerQueue

POLL_INTERVAL_S = 0.2


async def poll(
    queue: WorkerQueue,
    task_id: str,
    on_update: Callable[[Task], None],
    interval_s: float = POLL_INTERVAL_S,
) -> Task:
    """Read the task every ``interval_s`` until it is completed, discarded or cancelled."""
    while True:
        task = await queue.get_task(task_id)
        on_update(task)
        if task.state in TERMINAL_STATES:
            return task
        await asyncio.sleep(interval_s)


async def wait_for(queue: WorkerQueue, task_id: str, *, show_progress: bool) -> Task:
    """Wait for the task to end; draw ``task.progress`` on stderr when ``show_progress``."""
    if not show_progress or not render.stderr.is_terminal:
        return await poll(queue, task_id, lambda task: None)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=render.stderr, transient=True) as bar:
        handle = bar.add_task(task_id, total=None)

        def draw(task: Task) -> None:
            view = render.progress_view(task)
            bar.update(
                handle, description=view.description, completed=view.completed, total=view.total
            )

        return await poll(queue, task_id, draw)

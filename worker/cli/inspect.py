"""Read commands: ``status``, ``list``, ``why``, ``stats``. Each takes ``--json``.

They open an existing database read-only (a missing file is an error, exit 3), never
migrate it, and never take its write lock. Rendering (rich) loads when a command prints.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Annotated, Any

import typer

from worker.cli.parse import duration_option, parse_task_id
from worker.cli.session import print_json, read, usage_error
from worker.core.selection import Cursor
from worker.core.states import TaskState

if TYPE_CHECKING:
    from worker.core.callbacks import TaskCallback
    from worker.core.models import Task
    from worker.queue.quick_reads import QueueReads

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document instead.")]
TaskId = Annotated[
    str, typer.Argument(metavar="ID", parser=parse_task_id, help="The task id (any letter case).")
]


#: The options of wq list and wq stats, by the argument of the queue's method each becomes.
_LIST_OPTIONS = {
    "limit": "--limit",
    "after_id": "--after",
    "after_priority": "--after-priority",
    "queue": "--queue",
}
_STATS_OPTIONS = {"window_s": "--window", "queue": "--queue"}

#: The shortest refresh period of ``wq stats --watch``.
MIN_REFRESH_S = 0.1


def status(ctx: typer.Context, task_id: TaskId, as_json: JsonFlag = False) -> None:
    """Show one task: state, attempts, progress, errors, items and results, timing, lease,
    and the runs of its callbacks."""

    async def fetch(queue: QueueReads) -> tuple[Task, str, list[TaskCallback]]:
        task = await queue.get_task(task_id)
        return task, await queue.why(task_id), await queue.task_callbacks(task_id)

    task, why, callbacks = read(ctx, fetch)
    from worker.cli import render

    if as_json:
        document = render.task_document(task)
        document["callbacks"] = [c.model_dump(mode="json") for c in callbacks]
        print_json(document)
    else:
        render.stdout.print(render.task_panel(task, why, callbacks=callbacks))


def list_tasks(
    ctx: typer.Context,
    *,
    state: Annotated[
        TaskState | None, typer.Option("--state", "-s", help="Only tasks in this state.")
    ] = None,
    queue_name: Annotated[
        str | None, typer.Option("--queue", "-q", help="Only tasks of this queue.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many.")] = 50,
    after: Annotated[
        str | None,
        typer.Option(
            "--after", metavar="ID", parser=parse_task_id, help="Start after this task id."
        ),
    ] = None,
    after_priority: Annotated[
        int | None,
        typer.Option(
            "--after-priority",
            metavar="N",
            help="-s pending: the --after task's priority on the page before.",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List tasks in enqueue order (pending: in claim order); page on with --after."""

    async def fetch(queue: QueueReads) -> list[Task]:
        return await queue.list_tasks(
            state=state,
            queue=queue_name,
            limit=limit,
            after_id=after,
            after_priority=after_priority,
        )

    tasks = read(ctx, fetch, options=_LIST_OPTIONS)
    from worker.cli import render

    # Pending tasks are listed in claim order: the next page starts at the last task's
    # place as this page saw it, its priority included (a retry may change it).
    cursor = Cursor.after(tasks, limit, state)
    if as_json:
        document = {
            "tasks": [render.task_document(t) for t in tasks],
            "next_after": None if cursor is None else cursor.after_id,
            "next_after_priority": None if cursor is None else cursor.after_priority,
        }
        print_json(document)
        return
    if not tasks:
        render.stderr.print("no tasks")
        return
    render.stdout.print(render.tasks_table(tasks))
    if cursor is not None:
        words = ["wq list", *_filter_options(state, queue_name, limit), "--after", cursor.after_id]
        if cursor.after_priority is not None:
            words += ["--after-priority", str(cursor.after_priority)]
        render.stderr.print("more: " + " ".join(words), soft_wrap=True)  # one line to copy


def _filter_options(state: TaskState | None, queue_name: str | None, limit: int) -> list[str]:
    """The options that chose this page, to repeat for the next one."""
    words = [] if state is None else ["-s", state.value]
    if queue_name is not None:
        words += ["-q", shlex.quote(queue_name)]
    return words if limit == 50 else [*words, "-n", str(limit)]


def why(ctx: typer.Context, task_id: TaskId, as_json: JsonFlag = False) -> None:
    """One line on why a task is not running (or what it is doing)."""

    async def fetch(queue: QueueReads) -> str:
        return await queue.why(task_id)

    line = read(ctx, fetch)
    if as_json:
        print_json({"id": task_id, "why": line})
    else:
        typer.echo(line)


def stats(
    ctx: typer.Context,
    *,
    queue_name: Annotated[
        str | None,
        typer.Option("--queue", "-q", help="Counts of this queue only (window figures: all)."),
    ] = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh until Ctrl-C.")] = False,
    interval: Annotated[
        float,
        typer.Option(
            "--interval", parser=duration_option, metavar="DURATION", help="Refresh period."
        ),
    ] = 2.0,
    window: Annotated[
        float,
        typer.Option(
            "--window", parser=duration_option, metavar="DURATION", help="Figures over this."
        ),
    ] = 300.0,
    as_json: JsonFlag = False,
) -> None:
    """Counts per queue and state, throughput, latency and workers (get_statistics)."""

    from worker.cli import render

    async def snapshot(queue: QueueReads) -> dict[str, Any]:
        figures = await queue.get_statistics(window_s=window)
        if queue_name is not None:
            figures["states"] = await queue.get_queue_stats(queue_name)
            figures["queues"] = {queue_name: figures["queues"].get(queue_name, {})}
            figures["queue"] = queue_name
        figures["paused"] = await queue.paused_queues()
        return figures

    async def follow(queue: QueueReads) -> None:
        import asyncio  # a watch only: a read command needs no event loop

        figures = await snapshot(queue)
        if not render.stdout.is_terminal:  # piped: one table after another
            while True:
                render.stdout.print(render.stats_view(figures, figures["paused"]), "")
                await asyncio.sleep(interval)
                figures = await snapshot(queue)
        from rich.live import Live

        with Live(render.stats_view(figures, figures["paused"]), console=render.stdout) as live:
            while True:
                await asyncio.sleep(interval)
                figures = await snapshot(queue)
                live.update(render.stats_view(figures, figures["paused"]))

    if watch and not as_json:
        if interval < MIN_REFRESH_S:  # 0 would redraw as fast as the database answers
            usage_error(
                f"--interval: at least {MIN_REFRESH_S:g}s between refreshes, got {interval:g}s"
            )
        # Ctrl-C is how a watch ends.
        read(ctx, follow, ends_on_interrupt=True, options=_STATS_OPTIONS)
        return
    figures = read(ctx, snapshot, options=_STATS_OPTIONS)
    if as_json:
        print_json(figures)
    else:
        render.stdout.print(render.stats_view(figures, figures["paused"]))

"""Operator commands: cancel, resume, hold, pause, unpause, purge, and ``db upgrade``.

They write to an existing database at the newest schema revision and never create or
migrate one (a missing file: exit 3; an older revision: run ``wq db upgrade``), except
``db upgrade``, which does both.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from worker.cli.inspect import JsonFlag, TaskId
from worker.cli.parse import duration_option
from worker.cli.session import print_json, run, warn
from worker.core.errors import InvalidStateTransitionError
from worker.core.states import TERMINAL_STATES, TaskState

if TYPE_CHECKING:
    from worker.queue.worker_queue import WorkerQueue

#: How often ``wq cancel`` reads a running task back while it waits for it to stop.
CANCEL_POLL_S = 0.1

QueueName = Annotated[str, typer.Argument(metavar="QUEUE", help="The queue name.")]

db_app = typer.Typer(help="The database schema.", no_args_is_help=True, rich_markup_mode=None)


def _report(task_id: str, state: TaskState, as_json: bool, note: str = "") -> None:
    if as_json:
        print_json({"id": task_id, "state": state.value})
    else:
        typer.echo(f"{task_id} {state.value}{note}")


def cancel(
    ctx: typer.Context,
    task_id: TaskId,
    *,
    wait: Annotated[
        float,
        typer.Option(
            "--wait",
            parser=duration_option,
            metavar="DURATION",
            help="How long to wait for a running task to stop.",
        ),
    ] = 5.0,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Print at once; a running task stops later.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Cancel a task; a running one is asked to stop, and wq waits for it (--wait).

    Prints the state the task ended in; if a running task has not stopped by the end of
    --wait, the cancel stays requested and its worker stops it later.
    """
    patience = 0.0 if no_wait else wait

    import asyncio  # not at wq's start: --help needs no event loop

    async def act(queue: WorkerQueue) -> TaskState:
        state = await queue.mark_as_cancelled(task_id)
        deadline = time.monotonic() + patience
        while state is TaskState.PROCESSING and time.monotonic() < deadline:
            await asyncio.sleep(min(CANCEL_POLL_S, max(0.0, deadline - time.monotonic())))
            state = (await queue.get_task(task_id)).state
        return state

    state = run(ctx, act, "write")
    if as_json:
        still_running = state is TaskState.PROCESSING
        print_json({"id": task_id, "state": state.value, "cancel_pending": still_running})
        return
    if state is TaskState.PROCESSING and patience > 0:
        note = (
            f" (cancel requested; its worker has not stopped it within {patience:g}s: "
            "it stays requested, see `wq status`)"
        )
    elif state is TaskState.PROCESSING:
        note = " (cancel requested: its worker stops it)"
    elif state is TaskState.COMPLETED:
        note = " (it completed before its worker saw the cancel)"
    else:
        note = ""
    typer.echo(f"{task_id} {state.value}{note}")


def resume(ctx: typer.Context, task_id: TaskId, as_json: JsonFlag = False) -> None:
    """Run a discarded task again, or release a held pending task."""

    async def act(queue: WorkerQueue) -> TaskState:
        task = await queue.get_task(task_id)
        if task.state is TaskState.DISCARDED:
            await queue.mark_as_resume(task_id)
        elif task.state is TaskState.PENDING and task.held:
            await queue.unhold(task_id)
        else:
            state = f"{task.state.value}{' and held' if task.held else ''}"
            raise InvalidStateTransitionError(
                task_id, "resume", state, ("discarded", "pending and held")
            )
        return TaskState.PENDING

    _report(task_id, run(ctx, act, "write"), as_json)


def hold(ctx: typer.Context, task_id: TaskId, as_json: JsonFlag = False) -> None:
    """Keep a pending task from being claimed until `wq resume`."""

    async def act(queue: WorkerQueue) -> TaskState:
        await queue.hold(task_id)
        return TaskState.PENDING

    _report(task_id, run(ctx, act, "write"), as_json, " (held)")


def pause(ctx: typer.Context, queue_name: QueueName, as_json: JsonFlag = False) -> None:
    """Claim nothing from QUEUE until `wq unpause` (kept in the database)."""

    async def act(queue: WorkerQueue) -> int:
        await queue.pause_queue(queue_name)
        return int((await queue.get_queue_stats(queue_name))["total"])

    tasks = run(ctx, act, "write")
    if as_json:
        print_json({"queue": queue_name, "paused": True, "tasks": tasks})
    else:
        typer.echo(f"queue {queue_name} paused")
        if tasks == 0:  # ahead of its first task, or a misspelt name
            warn(f"no task is in queue {queue_name!r} yet: is that its name?")


def unpause(ctx: typer.Context, queue_name: QueueName, as_json: JsonFlag = False) -> None:
    """Resume claiming from QUEUE."""

    async def act(queue: WorkerQueue) -> bool:
        return await queue.unpause_queue(queue_name)

    was_paused = run(ctx, act, "write")
    if as_json:
        print_json({"queue": queue_name, "paused": False, "was_paused": was_paused})
    elif was_paused:
        typer.echo(f"queue {queue_name} unpaused")
    else:
        typer.echo(f"queue {queue_name} was not paused")


def purge(
    ctx: typer.Context,
    older_than: Annotated[
        float,
        typer.Option(
            "--older-than",
            parser=duration_option,
            metavar="DURATION",
            help="Finished longer ago than this: 30s, 15m, 12h, 7d.",
        ),
    ],
    states: Annotated[
        list[TaskState] | None,
        typer.Option("--state", "-s", help="Terminal states to purge (default: all three)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Delete finished tasks (completed, discarded, cancelled) older than --older-than, with
    their webhook deliveries and the files packages wrote for them (tts: data/outputs/ID/)."""
    chosen = list(states) if states else sorted(TERMINAL_STATES)

    async def act(queue: WorkerQueue) -> int:
        return await queue.purge(older_than, chosen)

    deleted = run(ctx, act, "write", options={"older_than_s": "--older-than"})
    if as_json:
        print_json({"deleted": deleted, "older_than_s": older_than, "states": chosen})
    else:
        typer.echo(f"deleted {deleted} task{'' if deleted == 1 else 's'}")


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Create or migrate the database to the newest schema revision; print the revision."""

    from worker.storage.revision import HEAD_REVISION

    async def act(queue: WorkerQueue) -> tuple[str, str]:
        return HEAD_REVISION, queue.config.database_url  # opening the queue upgraded it

    revision, url = run(ctx, act, "create")
    if as_json:
        print_json({"revision": revision, "database_url": url})
    else:
        typer.echo(revision)

"""``wq schedule add|list|remove``: periodic tasks, stored in the database.

``add`` declares (or updates) a schedule by name: a cron expression (``--cron``, in
``--timezone``) or an interval (``--every``), a registered request kind and its request as
JSON, and the options of each tick's task. Running workers enqueue its ticks, each exactly
once. ``list`` shows every schedule with its next run; ``remove`` deletes one (the tasks it
enqueued stay).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from worker.cli.inspect import JsonFlag
from worker.cli.parse import duration_option, parse_json_object, priority_option
from worker.cli.session import print_json, run
from worker.cli.submit import MaxAttemptsOpt, QueueOpt, TimeoutOpt, build_request

#: Where the queue's errors for a schedule point (``schedule 'nightly'.timing.interval_s``,
#: ``schedule 'nightly': options.timeout_s``), and the option of ``wq schedule add`` for it.
_OPTIONS = {
    "timing.cron": "--cron",
    "timing.interval_s": "--every",
    "timing.timezone": "--timezone",
    "catch_up": "--catch-up",
    "max_catch_up": "--max-catch-up",
    "options.queue": "--queue",
    "options.priority": "--priority",
    "options.max_attempts": "--max-attempts",
    "options.timeout_s": "--timeout",
    "options.name": "--name",
    "options.on_success": "--on-success",
    "options.on_failure": "--on-failure",
}


def _as_options(message: str, name: str) -> str:
    """The queue's error for schedule ``name`` with each field it names as its option."""
    for start in (f"schedule {name!r}.", f"schedule {name!r}: "):
        for field, option in _OPTIONS.items():
            message = message.replace(f"{start}{field}:", f"schedule {name!r}: {option}:")
    message = message.replace(f"schedule {name!r}.timing: ", f"schedule {name!r}: ")
    return message.replace("cron or interval_s", "--cron or --every")


if TYPE_CHECKING:
    from worker.core.schedules import Schedule
    from worker.queue.worker_queue import WorkerQueue

schedule_app = typer.Typer(
    help="Periodic tasks: add, list and remove schedules.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

ScheduleName = Annotated[str, typer.Argument(metavar="NAME", help="The schedule's name.")]


def _document(schedule: Schedule) -> dict[str, Any]:
    return schedule.model_dump(mode="json")


@schedule_app.command("add")
def add(
    ctx: typer.Context,
    name: ScheduleName,
    *,
    kind: Annotated[str, typer.Option("--kind", "-k", help="The request kind to enqueue.")],
    request: Annotated[
        str, typer.Option("--request", "-r", metavar="JSON", help="The request, a JSON object.")
    ] = "{}",
    cron: Annotated[
        str | None,
        typer.Option(
            "--cron",
            metavar="EXPR",
            help="Cron expression: 5 fields (minute hour day month weekday), or 6 with "
            "seconds first.",
        ),
    ] = None,
    every: Annotated[
        float | None,
        typer.Option(
            "--every",
            parser=duration_option,
            metavar="DURATION",
            help="An interval instead of --cron: 30s, 15m, 1h (ticks on its multiples since "
            "the epoch).",
        ),
    ] = None,
    timezone: Annotated[
        str, typer.Option("--timezone", "--tz", help="The cron expression's timezone (IANA).")
    ] = "UTC",
    catch_up: Annotated[
        Literal["skip", "all"],
        typer.Option(
            "--catch-up",
            help="Ticks missed while no worker ran: skip (enqueue the latest only) or all.",
        ),
    ] = "skip",
    max_catch_up: Annotated[
        int, typer.Option("--max-catch-up", min=1, help="With --catch-up all: at most this many.")
    ] = 100,
    queue: QueueOpt = "default",
    priority: Annotated[
        int,
        typer.Option(
            "--priority",
            "-p",
            parser=priority_option,
            metavar="PRIORITY",
            help="An integer (higher runs first) or low, normal, high, critical.",
        ),
    ] = 0,
    max_attempts: MaxAttemptsOpt = None,
    timeout: TimeoutOpt = None,
    task_name: Annotated[
        str | None, typer.Option("--name", help="The tasks' name (default: the schedule's).")
    ] = None,
    on_success: Annotated[
        str | None, typer.Option("--on-success", metavar="MOD:FN", help="Callback on success.")
    ] = None,
    on_failure: Annotated[
        str | None, typer.Option("--on-failure", metavar="MOD:FN", help="Callback on discard.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Declare or update a schedule: wq schedule add nightly --cron '0 3 * * *' --kind call
    --request '{"target": "app.jobs:cleanup"}'"""
    try:
        fields = parse_json_object(request)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--request'") from None
    model = build_request(kind, fields)

    async def act(queue_: WorkerQueue) -> tuple[Schedule, float]:
        from worker.core.errors import InvalidInputError

        try:
            return await declare(queue_), queue_.clock()
        except InvalidInputError as exc:
            raise InvalidInputError(_as_options(str(exc), name)) from exc

    async def declare(queue_: WorkerQueue) -> Schedule:
        return await queue_.schedule(
            name,
            request=model,
            cron=cron,
            interval_s=every,
            timezone=timezone,
            catch_up=catch_up,
            max_catch_up=max_catch_up,
            queue=queue,
            priority=priority,
            max_attempts=max_attempts,
            timeout_s=timeout,
            task_name=task_name,
            on_success=on_success,
            on_failure=on_failure,
        )

    saved, now = run(ctx, act, "create")
    if as_json:
        print_json(_document(saved))
        return
    from worker.cli import render

    typer.echo(
        f"schedule {saved.name}: {saved.timing.describe()}, next run "
        f"{render.instant(saved.next_run_at, now, render.cron_zone(saved))}"
    )


@schedule_app.command("list")
def list_schedules(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Every schedule: its timing, what it enqueues, its next run and its last tick."""

    async def read(queue: WorkerQueue) -> tuple[list[Schedule], float]:
        return await queue.list_schedules(), queue.clock()

    found, now = run(ctx, read, "read")
    if as_json:
        print_json({"schedules": [_document(s) for s in found]})
        return
    from worker.cli import render

    if not found:
        render.stderr.print("no schedules")
        return
    render.stdout.print(render.schedules_table(found, now))


@schedule_app.command("remove")
def remove(ctx: typer.Context, name: ScheduleName, as_json: JsonFlag = False) -> None:
    """Delete a schedule (the tasks it enqueued stay)."""

    async def act(queue: WorkerQueue) -> None:
        await queue.get_schedule(name)  # an unknown name is an error (exit 1)
        await queue.remove_schedule(name)

    run(ctx, act, "write")
    if as_json:
        print_json({"name": name, "removed": True})
    else:
        typer.echo(f"schedule {name} removed")

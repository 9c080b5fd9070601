"""``wq submit command|call``: build a request, enqueue it as a task, optionally wait.

Packages add ``submit`` commands of their own (the ``tts`` package's ``wq submit tts`` and
``wq submit audio``) through the ``worker.cli`` entry points, with what this module offers
them: :data:`submit_app` (the group), the shared options (:data:`QueueOpt`, :data:`PriorityOpt`,
... :data:`WaitOpt`), :func:`shared_options` (a command's ``locals()`` into a
:class:`Submission`), :func:`build_request` (a registered kind's model, validated, or a usage
error) and :func:`submit` (enqueue, print, ``--wait``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from worker.cli.inspect import JsonFlag
from worker.cli.parse import (
    duration_option,
    parse_env_pair,
    parse_json_list,
    parse_json_object,
    parse_task_id,
    priority_option,
)
from worker.cli.session import ExitCode, fail, print_json, run, usage_error, validation_message
from worker.core.errors import UnknownRequestKindError
from worker.core.states import TaskState

if TYPE_CHECKING:  # pydantic and the queue load when a command runs, not at wq's start
    from pydantic import BaseModel

    from worker.core.models import Task
    from worker.queue.worker_queue import WorkerQueue

T = TypeVar("T")

submit_app = typer.Typer(
    help="Enqueue a task; prints its id.", no_args_is_help=True, rich_markup_mode=None
)

QueueOpt = Annotated[str, typer.Option("--queue", "-q", help="Queue name.")]
PriorityOpt = Annotated[
    int | None,
    typer.Option(
        "--priority",
        "-p",
        parser=priority_option,
        metavar="PRIORITY",
        help="An integer (higher runs first) or low, normal, high, critical.",
    ),
]
DelayOpt = Annotated[
    float | None,
    typer.Option(
        "--delay", parser=duration_option, metavar="DURATION", help="Run no sooner: 10s, 5m, 2h."
    ),
]
MaxAttemptsOpt = Annotated[int | None, typer.Option("--max-attempts", min=1)]
TimeoutOpt = Annotated[
    float | None,
    typer.Option(
        "--timeout", parser=duration_option, metavar="DURATION", help="Stop an attempt after."
    ),
]
NameOpt = Annotated[str | None, typer.Option("--name", help="A label for people.")]
DependsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--depends-on",
        metavar="ID",
        parser=parse_task_id,
        help="Run after this task completes (repeat).",
    ),
]
KeyOpt = Annotated[
    str | None,
    typer.Option("--idempotency-key", metavar="KEY", help="Reuse the live task with this key."),
]
WaitOpt = Annotated[
    bool, typer.Option("--wait", help="Wait until the task ends; exit 4 unless it completed.")
]


@dataclass(frozen=True, slots=True)
class Submission:
    """The options every ``submit`` command shares."""

    queue: str = "default"
    priority: int | None = None
    delay_s: float | None = None
    max_attempts: int | None = None
    timeout_s: float | None = None
    name: str | None = None
    depends_on: list[str] = field(default_factory=list)
    idempotency_key: str | None = None
    wait: bool = False
    as_json: bool = False

    def task(self, request: BaseModel, now: float) -> Task:
        from pydantic import ValidationError

        from worker.core.models import Task, TaskItem

        try:
            return Task(
                items=[TaskItem(request=request)],
                queue=self.queue,
                priority=self.priority or 0,
                schedule_at=now + self.delay_s if self.delay_s else 0.0,
                max_attempts=self.max_attempts,
                timeout_s=self.timeout_s,
                name=self.name,
                depends_on=self.depends_on,
                idempotency_key=self.idempotency_key,
            )
        except ValidationError as exc:
            usage_error(f"invalid task: {validation_message(exc, TASK_OPTIONS)}")


#: The options of ``wq submit`` that set a task's fields, named in its errors.
TASK_OPTIONS = {
    "queue": "--queue",
    "priority": "--priority",
    "schedule_at": "--delay",
    "max_attempts": "--max-attempts",
    "timeout_s": "--timeout",
    "name": "--name",
    "depends_on": "--depends-on",
    "idempotency_key": "--idempotency-key",
}


def build_request(
    kind: str, fields: dict[str, Any], options: Mapping[str, str] | None = None
) -> BaseModel:
    """The registered model of ``kind``, validated from ``fields`` (None values left out);
    an error names the field as ``options`` maps it to the command's option, if it does."""
    from pydantic import ValidationError

    from worker.core.kinds import model_for

    try:
        model = model_for(kind)
    except UnknownRequestKindError as exc:
        usage_error(str(exc))
    try:
        return model.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        usage_error(f"invalid {kind} request: {validation_message(exc, options)}")


def _parsed(parser: Callable[[str], T], value: str | None, option: str) -> T | None:
    """``parser(value)``; its ValueError becomes a usage error naming ``option``."""
    if value is None:
        return None
    try:
        return parser(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=f"'{option}'") from None


def shared_options(values: Mapping[str, Any]) -> Submission:
    """The shared options, from a submit command's parameters (its ``locals()``)."""
    return Submission(
        queue=values["queue"],
        priority=values["priority"],
        delay_s=values["delay"],
        max_attempts=values["max_attempts"],
        timeout_s=values["timeout"],
        name=values["name"],
        depends_on=values["depends_on"] or [],
        idempotency_key=values.get("idempotency_key"),
        wait=values.get("wait", False),
        as_json=values.get("as_json", False),
    )


def submit(ctx: typer.Context, submission: Submission, request: BaseModel) -> None:
    """Enqueue, print the id (or the task as JSON); with ``--wait``, follow it to its end."""
    from worker.cli import render
    from worker.cli.wait import wait_for

    submission.task(request, time.time())  # refuses bad input before the database opens

    async def act(queue: WorkerQueue) -> Task:
        task = submission.task(request, queue.clock())  # a delay counts on the queue's clock
        await queue.enqueue([task])  # sets task.id (the live task's, for a reused key)
        if not submission.wait:
            return await queue.get_task(task.id)
        if not submission.as_json:
            typer.echo(task.id)
        return await wait_for(queue, task.id, show_progress=not submission.as_json)

    final = run(ctx, act, "create")
    if submission.as_json:
        print_json(render.task_document(final))
    elif not submission.wait:
        typer.echo(final.id)
    if submission.wait and final.state is not TaskState.COMPLETED:
        error = f": {final.last_error}" if final.last_error else ""
        fail(ExitCode.NOT_COMPLETED, f"task {final.id} ended {final.state.value}{error}")


@submit_app.command(
    "command", context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True}
)
def submit_command(
    ctx: typer.Context,
    *,
    argv: Annotated[list[str], typer.Argument(metavar="ARGV", help="Program and arguments.")],
    cwd: Annotated[str | None, typer.Option("--cwd", help="Working directory.")] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", metavar="K=V", help="Add to the env.")
    ] = None,
    queue: QueueOpt = "default",
    priority: PriorityOpt = None,
    delay: DelayOpt = None,
    max_attempts: MaxAttemptsOpt = None,
    timeout: TimeoutOpt = None,
    name: NameOpt = None,
    depends_on: DependsOpt = None,
    idempotency_key: KeyOpt = None,
    wait: WaitOpt = False,
    as_json: JsonFlag = False,
) -> None:
    """Run a program (no shell): wq submit command -- ffmpeg -i in.wav out.mp3"""
    pairs = [_parsed(parse_env_pair, pair, "--env") for pair in env or []]
    variables = dict(pair for pair in pairs if pair is not None)
    request = build_request(
        "command",
        {"argv": argv, "cwd": cwd, "env": variables, "timeout_s": timeout},
        {"argv": "ARGV", "cwd": "--cwd", "env": "--env", "timeout_s": "--timeout"},
    )
    options = shared_options(locals())
    submit(ctx, options, request)


@submit_app.command("call")
def submit_call(
    ctx: typer.Context,
    *,
    target: Annotated[str, typer.Argument(help="package.module:function")],
    args: Annotated[
        str | None, typer.Option("--args", metavar="JSON", help="Positional args: a JSON array.")
    ] = None,
    kwargs: Annotated[
        str | None,
        typer.Option("--kwargs", metavar="JSON", help="Keyword args: a JSON object."),
    ] = None,
    queue: QueueOpt = "default",
    priority: PriorityOpt = None,
    delay: DelayOpt = None,
    max_attempts: MaxAttemptsOpt = None,
    timeout: TimeoutOpt = None,
    name: NameOpt = None,
    depends_on: DependsOpt = None,
    idempotency_key: KeyOpt = None,
    wait: WaitOpt = False,
    as_json: JsonFlag = False,
) -> None:
    """Call a Python function: wq submit call app.jobs:resize --args '[640]'"""
    fields = {
        "target": target,
        "args": _parsed(parse_json_list, args, "--args"),
        "kwargs": _parsed(parse_json_object, kwargs, "--kwargs"),
    }
    request = build_request("call", fields, {"args": "--args", "kwargs": "--kwargs"})
    options = shared_options(locals())
    submit(ctx, options, request)


__all__ = [
    "DelayOpt",
    "DependsOpt",
    "KeyOpt",
    "MaxAttemptsOpt",
    "NameOpt",
    "PriorityOpt",
    "QueueOpt",
    "Submission",
    "TimeoutOpt",
    "WaitOpt",
    "build_request",
    "shared_options",
    "submit",
    "submit_app",
]

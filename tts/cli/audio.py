"""``wq submit audio``: one ``audio`` task per file, every path and ``--op`` checked first.

It imports only what ``wq`` has loaded already (``worker.cli``); the request model is imported
when the command runs.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from tts.cli.audio_args import DEFAULT_OPERATION, audio_files, parse_operation
from worker.cli.session import ExitCode, fail, print_json, run, usage_error, validation_message
from worker.cli.submit import (
    DelayOpt,
    DependsOpt,
    MaxAttemptsOpt,
    NameOpt,
    PriorityOpt,
    QueueOpt,
    TimeoutOpt,
    shared_options,
)
from worker.core.states import TaskState
from worker.core.validation_errors import error_message

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

    from worker.core.models import Task
    from worker.queue.worker_queue import WorkerQueue


def _audio_requests(files: list[str], ops: list[str]) -> list[BaseModel]:
    """One ``audio`` request per file; an invalid operation is a usage error naming its --op."""
    from pydantic import ValidationError

    from tts.requests import AudioRequest

    try:
        operations = [parse_operation(op) for op in ops]
    except ValueError as exc:
        usage_error(str(exc))
    requests: list[BaseModel] = []
    for path in files:
        try:
            requests.append(AudioRequest.model_validate({"path": path, "operations": operations}))
        except ValidationError as exc:
            usage_error(_audio_error(exc, ops))
    return requests


def _audio_error(exc: ValidationError, ops: list[str]) -> str:
    """The first error, as ``invalid --op 'TEXT': field: message`` when it lies in an op."""
    error = exc.errors()[0]
    loc = error["loc"]
    if len(loc) >= 2 and loc[0] == "operations" and isinstance(loc[1], int) and loc[1] < len(ops):
        field_path = ".".join(str(part) for part in loc[3:])  # loc[2] is the op's tag
        where = f"{field_path}: " if field_path else ""
        return f"invalid --op {ops[loc[1]]!r}: {where}{error_message(error)}"
    return f"invalid audio request: {validation_message(exc)}"


def submit_audio(
    ctx: typer.Context,
    *,
    paths: Annotated[
        list[str],
        typer.Argument(metavar="PATH", help="Audio files, or directories to search."),
    ],
    ops: Annotated[
        list[str] | None,
        typer.Option(
            "--op",
            metavar="OP",
            help="An operation, NAME[:key=value,...]; repeat to chain (default: analyze).",
        ),
    ] = None,
    queue: QueueOpt = "default",
    priority: PriorityOpt = None,
    delay: DelayOpt = None,
    max_attempts: MaxAttemptsOpt = None,
    timeout: TimeoutOpt = None,
    name: NameOpt = None,
    depends_on: DependsOpt = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Wait until every task ends (ids print first); exit 4 unless all completed.",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON list of the tasks instead of ids.")
    ] = False,
) -> None:
    """Process audio files, one task per file: wq submit audio takes/ --op convert:format=flac

    A directory adds every audio file under it (wav, flac, ogg, oga, mp3, aif, aiff;
    recursively, sorted). Each --op is NAME[:key=value,...], applied in order: analyze (the
    default), convert:format=flac,sample_rate=16000,channels=1,
    normalize:mode=peak|rms,target_dbfs=-1, trim_silence:threshold_dbfs=-50,padding_ms=10.
    Every path and --op is checked first; then all the tasks are enqueued at once (or none).
    """
    from worker.cli import render  # rich: loaded when the command runs, not at wq's start
    from worker.cli.wait import wait_for

    ops = ops or [DEFAULT_OPERATION]
    try:
        files = audio_files(paths)
    except ValueError as exc:
        usage_error(str(exc))
    requests = _audio_requests(files, ops)
    options = shared_options(locals())
    now = time.time()
    tasks = [options.task(request, now) for request in requests]

    async def act(queue: WorkerQueue) -> list[Task]:
        await queue.enqueue(tasks)  # one transaction: all of them or none
        if not wait:
            return [await queue.get_task(task.id) for task in tasks]
        if not as_json:
            for task in tasks:
                typer.echo(task.id)
        return [await wait_for(queue, task.id, show_progress=not as_json) for task in tasks]

    finals = run(ctx, act)
    if as_json:
        print_json([render.task_document(task) for task in finals])
    elif not wait:
        for task in finals:
            typer.echo(task.id)
    unfinished = [task for task in finals if task.state is not TaskState.COMPLETED]
    if wait and unfinished:
        ended = ", ".join(f"{task.id} {task.state.value}" for task in unfinished)
        fail(
            ExitCode.NOT_COMPLETED,
            f"{len(unfinished)} of {len(finals)} tasks did not complete: {ended}",
        )

"""Running one command: the configuration, the event loop, and errors turned into exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError

from worker.cli.parse import database_url
from worker.config import QueueConfig
from worker.errors import QueueError, StorageError
from worker.queue import WorkerQueue

T = TypeVar("T")


class ExitCode(IntEnum):
    """What ``wq`` exits with (also listed in ``wq --help``)."""

    OK = 0
    QUEUE_ERROR = 1  # unknown task, invalid state transition, refused input
    USAGE = 2  # bad arguments or configuration (typer's own code for usage errors)
    STORAGE = 3  # the database is locked, unreadable or unwritable
    NOT_COMPLETED = 4  # ``submit --wait``: the task ended discarded or cancelled
    INTERRUPTED = 130  # Ctrl-C


@dataclass(frozen=True, slots=True)
class Options:
    """The global options, kept in the typer context for every command."""

    database: str | None = None


def fail(code: ExitCode, message: str) -> NoReturn:
    """Print one line to stderr and exit with ``code``."""
    typer.echo(f"wq: error: {message}", err=True)
    raise typer.Exit(int(code))


def usage_error(message: str) -> NoReturn:
    fail(ExitCode.USAGE, message)


def validation_message(exc: ValidationError) -> str:
    """A pydantic error as one line naming each field."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'value'}: {error['msg']}"
        for error in exc.errors()
    )


def load_config(ctx: typer.Context) -> QueueConfig:
    """``QueueConfig.from_env()``, with ``--db`` in place of ``QUEUE_DATABASE_URL``."""
    options = ctx.find_object(Options) or Options()
    environ = {k: v for k, v in os.environ.items() if k.upper().startswith("QUEUE_")}
    if options.database is not None:
        environ = {k: v for k, v in environ.items() if k.upper() != "QUEUE_DATABASE_URL"}
        environ["QUEUE_DATABASE_URL"] = database_url(options.database)
    try:
        return QueueConfig.from_env(environ)
    except ValidationError as exc:
        usage_error(f"invalid configuration: {validation_message(exc)}")


def run(ctx: typer.Context, operation: Callable[[WorkerQueue], Awaitable[T]]) -> T:
    """Open the queue, run ``operation`` on it, close it; queue errors become exit codes."""
    config = load_config(ctx)

    async def main() -> T:
        async with WorkerQueue(config) as queue:
            return await operation(queue)

    try:
        return asyncio.run(main())
    except StorageError as exc:
        fail(ExitCode.STORAGE, str(exc))
    except QueueError as exc:
        fail(ExitCode.QUEUE_ERROR, str(exc))
    except KeyboardInterrupt:
        fail(ExitCode.INTERRUPTED, "interrupted")


def print_json(document: Any) -> None:
    """Write one JSON document to stdout."""
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()

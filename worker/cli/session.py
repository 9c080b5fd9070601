"""Running one command: the configuration, the event loop, and errors turned into exit codes.

Each command says how it uses the database (:data:`Access`): read commands open an existing
file read-only, operator commands open an existing file at the newest schema revision, and
only ``db upgrade``, ``worker`` and ``submit`` create or migrate one. The queue, SQLAlchemy
and pydantic load here, when a command runs, not when ``wq`` starts.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TypeVar, cast

import typer

from worker.core.database_url import file_url, sqlite_file

if TYPE_CHECKING:
    from pydantic import ValidationError

    from worker.core.config import QueueConfig
    from worker.queue.quick_reads import QueueReads
    from worker.queue.worker_queue import WorkerQueue

T = TypeVar("T")

log = logging.getLogger(__name__)

#: ``read``: an existing database, opened read-only; never created or migrated.
#: ``write``: an existing database at the newest schema revision; never created or migrated.
#: ``create``: created, or migrated to the newest revision, first.
Access = Literal["read", "write", "create"]


class ExitCode(IntEnum):
    """What ``wq`` exits with (also listed in ``wq --help``)."""

    OK = 0
    QUEUE_ERROR = 1  # unknown task or schedule, invalid state transition
    USAGE = 2  # bad arguments, input or configuration (typer's own code for usage errors)
    STORAGE = 3  # no database there, or it is locked, unreadable, unwritable, out of date
    NOT_COMPLETED = 4  # ``submit --wait``: the task ended discarded or cancelled
    QUEUE_FULL = 5  # ``submit``: the queue holds QUEUE_MAX_PENDING pending tasks; try later
    INTERNAL = 70  # an error wq did not expect: a bug (EX_SOFTWARE of sysexits.h)
    RETIRED = 75  # a pool's worker process retired (worker.runtime.retirement.RETIRED_EXIT_CODE)
    INTERRUPTED = 130  # Ctrl-C


@dataclass(frozen=True, slots=True)
class Options:
    """The global options, kept in the typer context for every command."""

    database: str | None = None
    debug: bool = False


def fail(code: ExitCode, message: str, detail: Sequence[str] = ()) -> NoReturn:
    """Print ``wq: error: ...`` (a line per line of ``message``) to stderr, then the
    ``detail`` lines as they are (a list that belongs to the error), and exit."""
    for line in message.splitlines() or [""]:
        typer.echo(f"wq: error: {line}", err=True)
    for line in detail:
        typer.echo(line, err=True)
    raise typer.Exit(int(code))


def usage_error(message: str, detail: Sequence[str] = ()) -> NoReturn:
    fail(ExitCode.USAGE, message, detail)


def warn(message: str) -> None:
    typer.echo(f"wq: warning: {message}", err=True)


def validation_message(exc: ValidationError, options: Mapping[str, str] | None = None) -> str:
    """A pydantic error as one line naming each field, as the command's option for it where
    ``options`` maps the field to one (``{"voice_id": "--voice"}``)."""
    from worker.core.validation_errors import error_message

    parts = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        if loc and options and loc[0] in options:
            loc[0] = options[loc[0]]
        parts.append(f"{'.'.join(loc) or 'value'}: {error_message(error)}")
    return "; ".join(parts)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _config_warnings(collect_them: bool) -> Iterator[list[str]]:
    """The warnings the configuration logs, kept from the log handlers (``wq worker``'s
    included) so that each prints once, as ``wq: warning: ...``; none when not
    ``collect_them`` (they reach the log handlers)."""
    if not collect_them:
        yield []
        return
    logger = logging.getLogger("worker.core.config")
    collect, propagate = _Collect(), logger.propagate
    logger.addHandler(collect)
    logger.propagate = False
    try:
        yield collect.messages
    finally:
        logger.removeHandler(collect)
        logger.propagate = propagate


def load_config(ctx: typer.Context, *, warnings_to_log: bool = False) -> QueueConfig:
    """``QueueConfig.from_env()``, with ``--db`` in place of ``QUEUE_DATABASE_URL``.

    It runs before the queue is imported, so a missing database driver is a configuration
    error (exit 2) rather than a failed import.
    """
    from worker.core.config import QueueConfig
    from worker.core.database_url import in_memory
    from worker.core.errors import ConfigurationError

    options = ctx.find_object(Options) or Options()
    environ = {k: v for k, v in os.environ.items() if k.upper().startswith("QUEUE_")}
    if options.database is not None:
        environ = {k: v for k, v in environ.items() if k.upper() != "QUEUE_DATABASE_URL"}
        environ["QUEUE_DATABASE_URL"] = file_url(options.database)
    with _config_warnings(not warnings_to_log) as warnings:
        try:
            config = QueueConfig.from_env(environ)
        except ConfigurationError as exc:
            given = {"QUEUE_DATABASE_URL": "--db"} if options.database is not None else {}
            lines = [f"{given.get(k, k)}: {problem}" for k, problem in exc.problems.items()]
            usage_error("\n".join(f"invalid configuration: {line}" for line in lines))
    for message in warnings:
        warn(message)
    if in_memory(config.database_url):
        setting = "--db" if options.database is not None else "QUEUE_DATABASE_URL"
        usage_error(
            f"{setting}: {config.database_url} is a database in memory, gone when this wq "
            "command ends (a worker or another command would never see it): give a file "
            "path, e.g. data/queue.db"
        )
    return config


class _Interrupts:
    """Ctrl-C before the event loop runs. Python raises KeyboardInterrupt wherever the main
    thread is, and one raised inside an import's lock callback is swallowed ("Exception
    ignored in ..."): the command would go on as if nothing happened. So ``wq`` counts them
    itself until the event loop's own handler takes over."""

    seen = False

    @classmethod
    def handler(cls, signum: int, frame: FrameType | None) -> None:
        cls.seen = True
        raise KeyboardInterrupt

    @classmethod
    def install(cls) -> None:
        """Count Ctrl-C from now on (``wq``'s start)."""
        signal.signal(signal.SIGINT, cls.handler)


install_interrupts = _Interrupts.install


def run(
    ctx: typer.Context,
    operation: Callable[[WorkerQueue], Awaitable[T]],
    access: Access = "create",
    *,
    warnings_to_log: bool = False,
    config: QueueConfig | None = None,
    ends_on_interrupt: bool = False,
    options: Mapping[str, str] | None = None,
) -> T:
    """Open the queue as ``access`` says, run ``operation`` on it, close it; queue errors
    become exit codes. ``warnings_to_log``: the configuration's warnings go to the log
    handlers (JSON lines) instead of ``wq: warning:`` lines. ``config``: the one the
    command loaded already (with :func:`load_config`). ``ends_on_interrupt``: Ctrl-C is
    how the command ends (a display that runs until then): exit 0, quietly. ``options``:
    the command's option for each argument of the queue's methods it passes on
    (``{"window_s": "--window"}``), named in place of the argument when one is refused."""
    import asyncio  # not at wq's start: --help needs no event loop

    if config is None:  # first: see load_config
        config = load_config(ctx, warnings_to_log=warnings_to_log)

    from worker.queue.worker_queue import WorkerQueue

    async def main() -> T:
        queue = WorkerQueue(config)
        await queue.initialize(create=access == "create", read_only=access == "read")
        try:
            return await operation(queue)
        finally:
            await queue.close()

    with _exit_codes(config, ends_on_interrupt=ends_on_interrupt, options=options):
        _check_interrupts()
        return asyncio.run(main())


def read(
    ctx: typer.Context,
    operation: Callable[[QueueReads], Awaitable[T]],
    *,
    ends_on_interrupt: bool = False,
    options: Mapping[str, str] | None = None,
) -> T:
    """:func:`run` for a read command: ``operation`` gets the queue's read methods.

    On a SQLite file they read through stdlib ``sqlite3``
    (:class:`~worker.queue.quick_reads.QuickReadQueue`), which loads neither SQLAlchemy
    nor, unless ``ends_on_interrupt`` (a display that waits between reads), an event loop:
    a read command then takes about half the time. A file that path does not take (none
    there, not a database, another schema revision) goes the queue's own way, which says
    what is wrong with it."""
    config = load_config(ctx)
    path = sqlite_file(config.database_url)
    if path is not None:
        from worker.queue.quick_reads import QuickReadQueue
        from worker.storage.sqlite.quick_reads import NotQuick

        queue = QuickReadQueue(config, path)
        with _exit_codes(config, ends_on_interrupt=ends_on_interrupt, options=options):
            try:
                queue.open()  # a locked database: a StorageError, exit 3
                quick = True
            except NotQuick as why:
                log.debug("reading through the queue's own path: %s", why)
                quick = False
        if quick:
            try:
                with _exit_codes(config, ends_on_interrupt=ends_on_interrupt, options=options):
                    _check_interrupts()
                    if not ends_on_interrupt:
                        return _to_the_end(operation(queue))
                    import asyncio

                    return asyncio.run(_awaited(operation(queue)))
            finally:
                queue.close()
    return run(
        ctx,
        operation,
        "read",
        config=config,
        ends_on_interrupt=ends_on_interrupt,
        options=options,
    )


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable


def _to_the_end(awaitable: Awaitable[T]) -> T:
    """The result of a coroutine that never waits (the quick reads), without a loop."""
    steps = awaitable.__await__()
    try:
        steps.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    steps.close()
    raise RuntimeError("a read without an event loop waited for something")


def _check_interrupts() -> None:
    if _Interrupts.seen:  # a Ctrl-C was swallowed while this command was loading
        raise KeyboardInterrupt
    if signal.getsignal(signal.SIGINT) is _Interrupts.handler:
        # asyncio.run cancels its task on Ctrl-C, but only in place of the default one.
        signal.signal(signal.SIGINT, signal.default_int_handler)


@contextmanager
def _exit_codes(
    config: QueueConfig, *, ends_on_interrupt: bool, options: Mapping[str, str] | None
) -> Iterator[None]:
    """Queue errors raised within as exit codes (:class:`ExitCode`); a refused argument
    named as its option (``options``, see :func:`run`)."""
    from worker.core.errors import (
        ConfigurationError,
        DatabaseNotFoundError,
        InvalidInputError,
        QueueError,
        QueueFullError,
        SchemaOutdatedError,
        StorageError,
        UnknownRequestKindError,
    )

    try:
        yield
    except DatabaseNotFoundError as exc:
        fail(
            ExitCode.STORAGE,
            f"no database at {exc.path} (`wq db upgrade` creates one, as do `wq worker` "
            "and `wq submit`)",
        )
    except SchemaOutdatedError as exc:
        where = f"the database {config.database_url} is at schema revision {exc.revision}"
        if exc.newer:
            fail(ExitCode.STORAGE, f"{where}, newer than this wq knows: upgrade worker-queue")
        fail(ExitCode.STORAGE, f"{where}, this wq needs {exc.expected}: run `wq db upgrade`")
    except StorageError as exc:
        fail(ExitCode.STORAGE, str(exc))
    except (ConfigurationError, InvalidInputError, UnknownRequestKindError) as exc:
        # A setting or what was typed is refused: a usage error.
        if isinstance(exc, ConfigurationError):
            usage_error(f"invalid configuration: {exc}")
        usage_error(as_option(str(exc), options or {}))
    except QueueFullError as exc:
        fail(ExitCode.QUEUE_FULL, f"{exc}: try again once workers have caught up")
    except QueueError as exc:
        fail(ExitCode.QUEUE_ERROR, str(exc))
    except KeyboardInterrupt:
        if ends_on_interrupt:
            raise typer.Exit(int(ExitCode.OK)) from None
        fail(ExitCode.INTERRUPTED, "interrupted")


def as_option(message: str, options: Mapping[str, str]) -> str:
    """``message`` with the argument it starts with (``window_s must ...``, ``after_id:
    ...``) named as the command's option for it, and so every argument name with an
    underscore in it wherever it stands ("pass after_priority with it"); a plain word
    (``queue``) only at the start, where it names the argument."""
    for argument, option in options.items():
        for after in (" ", ":"):
            if message.startswith(argument + after):
                message = option + message[len(argument) :]
                break
    for argument, option in options.items():
        if "_" in argument:
            message = re.sub(rf"(?<![\w-]){re.escape(argument)}\b", option, message)
    return message


def unexpected(exc: Exception) -> tuple[ExitCode, str]:
    """The exit code and the one line for an exception no command handled: the code of
    its class in the table, and :attr:`ExitCode.INTERNAL` for anything else (a bug)."""
    from worker.core.errors import (
        ConfigurationError,
        InvalidInputError,
        QueueError,
        QueueFullError,
        StorageError,
        UnknownRequestKindError,
    )

    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if isinstance(exc, ConfigurationError):
        return ExitCode.USAGE, f"invalid configuration: {text}"
    if isinstance(exc, QueueFullError):
        return ExitCode.QUEUE_FULL, text
    if isinstance(exc, InvalidInputError | UnknownRequestKindError):
        return ExitCode.USAGE, text
    if isinstance(exc, StorageError | OSError):
        return ExitCode.STORAGE, text or type(exc).__name__
    if isinstance(exc, QueueError):
        return ExitCode.QUEUE_ERROR, text
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return ExitCode.INTERNAL, f"internal error: {detail} (wq --debug ... shows the traceback)"


def in_utf8(stream: object) -> bool:
    """Whether ``stream`` writes UTF-8."""
    encoding = str(getattr(stream, "encoding", None) or "")
    return encoding.lower().replace("-", "").replace("_", "") == "utf8"


def print_json(document: Any) -> None:
    """Write one JSON document to stdout: in UTF-8 as it is, and with ``\\u`` escapes for
    what is not ASCII on a stream in another encoding (which would print ``?`` for it)."""
    text = json.dumps(document, indent=2, ensure_ascii=not in_utf8(sys.stdout))
    sys.stdout.write(text + "\n")
    sys.stdout.flush()

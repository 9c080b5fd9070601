"""The ``wq`` command line (also ``python -m worker``), built with typer and rich.

Configuration comes from the ``QUEUE_*`` environment variables (``QueueConfig.from_env()``);
``--db URL`` (or a plain file path) replaces ``QUEUE_DATABASE_URL``. Read commands take
``--json`` and then print exactly one JSON document on stdout. Errors print one line on
stderr, ``wq: error: ...``, and exit with one of these codes:

====  =====================================================================================
0     ok
1     a queue error: unknown task id or schedule name, invalid state transition
2     a usage error: bad option, argument or input (a duration, a priority, a request
      field, a request kind), or a refused setting (a bad ``QUEUE_*`` value; one line per
      variable)
3     a storage error: no database at that path, or it is locked, unreadable, not a
      database, or at an older schema revision (``wq db upgrade``)
4     ``wq submit --wait``: the task ended discarded or cancelled
5     ``wq submit``: the queue is full (``QUEUE_MAX_PENDING`` pending tasks); nothing was
      enqueued, try again later
70    an internal error: an exception ``wq`` did not expect (a bug); ``wq --debug ...``
      prints its traceback
75    a worker process of a pool retired (its task or memory limit): the supervisor
      starts another at once
130   interrupted (Ctrl-C)
====  =====================================================================================

No traceback reaches the user: :func:`main` turns any exception no command handled into
one line with the code of its class (``--debug`` shows the traceback too). A ``QUEUE_*``
variable that is no setting prints ``wq: warning: ...`` naming the closest one.

Starting is cheap: the command modules import the queue, SQLAlchemy, Alembic (only to
migrate), the runtime (only ``wq worker``) and rich's live displays where they are used, and
a command's own module is imported and its options built only when it runs
(:data:`COMMANDS`), so ``wq --help`` loads typer and little else.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback
from collections.abc import Iterator, MutableMapping
from importlib.metadata import entry_points
from typing import Annotated, Any

import typer
import typer.main
from typer.core import TyperGroup

from worker.cli.session import Options, in_utf8, install_interrupts, unexpected, warn

EXIT_CODES = (
    "Exit codes: 0 ok; 1 queue error (unknown task, invalid state transition); "
    "2 usage error or bad setting; 3 storage error (no database there, locked, unreadable, "
    "out of date); 4 submit --wait ended discarded or cancelled; 5 submit refused: the queue "
    "is full (QUEUE_MAX_PENDING); 70 internal error (a bug: "
    "--debug shows the traceback); 75 a pool's worker process retired; 130 interrupted."
)


class _Seen:
    debug = False  # --debug, for main(): it outlives the command's context


_seen = _Seen()


#: The options of ``wq`` itself, which go before the command.
GLOBAL_OPTIONS = ("--db", "--debug")


#: wq's own commands, in the order ``wq --help`` lists them: the module and the name of each
#: one's function (or, for a group, its ``typer.Typer``). A command is built, its module
#: imported and its signature read, only when it runs or help lists it: ``wq list`` does not
#: pay for the other twenty commands (about 20 ms of its start).
COMMANDS: dict[str, tuple[str, str]] = {
    "db": ("worker.cli.admin", "db_app"),
    "submit": ("worker.cli.submit", "submit_app"),
    "schedule": ("worker.cli.schedule", "schedule_app"),
    "worker": ("worker.cli.serve", "run_worker"),
    "status": ("worker.cli.inspect", "status"),
    "list": ("worker.cli.inspect", "list_tasks"),
    "why": ("worker.cli.inspect", "why"),
    "stats": ("worker.cli.inspect", "stats"),
    "cancel": ("worker.cli.admin", "cancel"),
    "resume": ("worker.cli.admin", "resume"),
    "hold": ("worker.cli.admin", "hold"),
    "pause": ("worker.cli.admin", "pause"),
    "unpause": ("worker.cli.admin", "unpause"),
    "purge": ("worker.cli.admin", "purge"),
    "web": ("worker.cli.web", "serve_web"),
}


def _built(name: str) -> Any:  # a click command (typer ships its own click)
    """The command ``name`` of :data:`COMMANDS`, built as typer builds a registered one."""
    module, attribute = COMMANDS[name]
    target = getattr(importlib.import_module(module), attribute)
    holder = typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False)
    holder.callback()(_no_options)  # a group, so that the command keeps its name
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=name)
    else:
        holder.command(name)(target)
    return typer.main.get_command(holder).commands[name]  # type: ignore[attr-defined]


def _no_options() -> None:
    """(The callback of :func:`_built`'s holder group.)"""


class _LazyCommands(MutableMapping[str, Any]):
    """A group's commands: the ones typer built (plugins'), then :data:`COMMANDS`, each
    built on first use. A plugin's command of the same name wins, as it did when both
    were registered."""

    def __init__(self, built: MutableMapping[str, Any]) -> None:
        self._built = built

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            if name not in COMMANDS:
                raise KeyError(name)
            self._built[name] = _built(name)
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        raise TypeError("wq's commands cannot be removed")

    def __iter__(self) -> Iterator[str]:
        yield from COMMANDS
        yield from (name for name in list(self._built) if name not in COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS) + sum(name not in COMMANDS for name in self._built)

    def __contains__(self, name: object) -> bool:
        return name in COMMANDS or name in self._built


class _Commands(TyperGroup):
    """``wq``'s commands: built when used (:data:`COMMANDS`); and a global option given
    after the command (``wq list --db x.db``, as many write it) is refused with where it
    goes, not only "No such option"."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _LazyCommands(self.commands)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)  # the names alone: no command is built for them

    def invoke(self, ctx: Any) -> Any:  # click.Context (typer ships its own click)
        try:
            return super().invoke(ctx)
        except Exception as exc:
            # click's NoSuchOption (typer ships its own click, and exports neither)
            option, message = getattr(exc, "option_name", None), getattr(exc, "message", None)
            if option in GLOBAL_OPTIONS and isinstance(message, str):
                value = " PATH" if option == "--db" else ""
                command = ctx.invoked_subcommand or "COMMAND"
                hint = f" ({option} goes before the command: wq {option}{value} {command} ...)"
                setattr(exc, "message", message + hint)  # noqa: B010 (not typed)
            raise


app = typer.Typer(
    name="wq",
    cls=_Commands,
    help="Operate a durable task queue: submit tasks, run workers, inspect and manage tasks.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain (click's) help and usage errors: typer's rich formatting imports rich's
    # Markdown and markdown-it, a third of wq's start-up time.
    rich_markup_mode=None,
)


@app.callback()
def _options(
    ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            metavar="URL",
            help="Database URL or SQLite file path (default: QUEUE_DATABASE_URL).",
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Print the traceback of an unexpected error.")
    ] = False,
) -> None:
    _seen.debug = debug
    ctx.obj = Options(database=db, debug=debug)


#: Packages add commands to ``wq`` through this entry-point group: each names a function
#: ``register(app: typer.Typer) -> None`` (``worker.cli.submit.submit_app`` is the ``submit``
#: group). A plugin module is imported at every ``wq`` start, so it must be light: it
#: imports what its commands need inside them.
PLUGIN_GROUP = "worker.cli"

log = logging.getLogger(__name__)


def load_plugins(target: typer.Typer = app) -> None:
    """Let every ``worker.cli`` entry point register its commands on ``target``."""
    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            ep.load()(target)
        except Exception as exc:
            # One broken plugin must not take the rest of wq with it; its commands are absent.
            log.debug("wq plugin %r (%s) failed", ep.name, ep.value, exc_info=True)
            warn(f"plugin {ep.name!r} ({ep.value}) could not be loaded: {exc}")


def _usable_streams() -> None:
    """Standard streams a command can print to whatever it was started with: a closed one
    (``wq worker >&-``: Python has None for it) discards what is printed, and one whose
    encoding cannot hold a character (``PYTHONIOENCODING=ascii``; a table's rules are box
    drawing characters) shows ``?`` for it rather than failing."""
    for name, descriptor in (("stdout", 1), ("stderr", 2)):
        stream = getattr(sys, name)
        if stream is None:
            # /dev/null on the descriptor itself: a file opened next would take it (the
            # lowest free one), and a child process would inherit it as its output.
            null = os.open(os.devnull, os.O_WRONLY)
            if null != descriptor:
                os.dup2(null, descriptor)
                os.close(null)
            setattr(sys, name, open(descriptor, "w", encoding="utf-8", closefd=False))  # noqa: SIM115
        elif not in_utf8(stream):
            reconfigure = getattr(stream, "reconfigure", None)
            if reconfigure is not None:
                reconfigure(errors="replace")


def main() -> None:
    """The console script: run ``app`` as ``wq``; an exception no command handled becomes
    one line on stderr and the exit code of its class (see the table above)."""
    _usable_streams()
    install_interrupts()
    try:
        load_plugins()
        app(prog_name="wq")
    except Exception as exc:
        code, line = unexpected(exc)
        if _seen.debug:
            traceback.print_exc()
        typer.echo(f"wq: error: {line}", err=True)
        sys.exit(int(code))


__all__ = ["COMMANDS", "EXIT_CODES", "PLUGIN_GROUP", "app", "load_plugins", "main"]

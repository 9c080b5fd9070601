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
migrate), the runtime (only ``wq worker``) and rich's live displays where they are used, so
``wq --help`` loads typer and little else.
"""

from __future__ import annotations

import logging
import sys
import traceback
from importlib.metadata import entry_points
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from worker.cli import admin, inspect, schedule, serve, web
from worker.cli.session import Options, install_interrupts, unexpected, warn
from worker.cli.submit import submit_app

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


class _Commands(TyperGroup):
    """``wq``'s commands: a global option given after the command (``wq list --db x.db``,
    as many write it) is refused with where it goes, not only "No such option"."""

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


app.add_typer(admin.db_app, name="db")
app.add_typer(submit_app, name="submit")
app.add_typer(schedule.schedule_app, name="schedule")
app.command("worker")(serve.run_worker)
app.command("status")(inspect.status)
app.command("list")(inspect.list_tasks)
app.command("why")(inspect.why)
app.command("stats")(inspect.stats)
app.command("cancel")(admin.cancel)
app.command("resume")(admin.resume)
app.command("hold")(admin.hold)
app.command("pause")(admin.pause)
app.command("unpause")(admin.unpause)
app.command("purge")(admin.purge)
app.command("web")(web.serve_web)


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


def main() -> None:
    """The console script: run ``app`` as ``wq``; an exception no command handled becomes
    one line on stderr and the exit code of its class (see the table above)."""
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


__all__ = ["EXIT_CODES", "PLUGIN_GROUP", "app", "load_plugins", "main"]

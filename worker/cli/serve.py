"""``wq worker``: run worker loops on this machine until stopped (or, with --burst, idle)."""

from __future__ import annotations

import importlib
import logging
from typing import Annotated

import typer

from worker import Worker
from worker.cli.session import run, usage_error
from worker.queue import WorkerQueue

LOG_LEVELS = ("debug", "info", "warning", "error")


def import_processors(modules: list[str]) -> None:
    """Import each module so the handlers it decorates register themselves."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            usage_error(f"cannot import processors module {name!r}: {exc}")


def run_worker(
    ctx: typer.Context,
    *,
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", "-c", min=1, help="Tasks at once [QUEUE_CONCURRENCY]."),
    ] = None,
    queues: Annotated[
        list[str] | None,
        typer.Option("--queue", "-q", metavar="QUEUE", help="Serve this queue (repeat; all)."),
    ] = None,
    processors: Annotated[
        list[str] | None,
        typer.Option("--processors", metavar="MODULE", help="Import to register handlers."),
    ] = None,
    burst: Annotated[
        bool, typer.Option("--burst", help="Exit once no task is due (tests, cron jobs).")
    ] = False,
    log_level: Annotated[
        str, typer.Option("--log-level", metavar="|".join(LOG_LEVELS), help="Logging on stderr.")
    ] = "info",
) -> None:
    """Run workers: claim tasks, run their handlers, record the outcomes.

    Ctrl-C (or SIGTERM) stops claiming and lets running tasks finish; a second one stops them.
    """
    if log_level.lower() not in LOG_LEVELS:
        raise typer.BadParameter(f"use one of {', '.join(LOG_LEVELS)}", param_hint="'--log-level'")
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    import_processors(processors or [])

    async def serve(queue: WorkerQueue) -> dict[str, int]:
        runner = Worker(queue, concurrency=concurrency, queues=queues or None, burst=burst)
        return await runner.run()

    counts = run(ctx, serve)
    summary = ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))
    typer.echo(f"worker stopped: {summary or 'no tasks'}", err=True)

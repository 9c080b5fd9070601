"""``wq worker``: run worker loops on this machine until stopped (or, with --burst, idle)."""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Annotated

import typer

from worker.cli.logs import LOG_FORMATS, LogFormat, configure_logging
from worker.cli.session import run, usage_error

if TYPE_CHECKING:
    from worker.queue.worker_queue import WorkerQueue

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
        typer.Option(
            "--processors",
            "--module",
            "-m",
            metavar="MODULE",
            help="Import to register handlers and task functions (repeat).",
        ),
    ] = None,
    burst: Annotated[
        bool, typer.Option("--burst", help="Exit once no task is due (tests, cron jobs).")
    ] = False,
    log_level: Annotated[
        str, typer.Option("--log-level", metavar="|".join(LOG_LEVELS), help="Logging on stderr.")
    ] = "info",
    log_format: Annotated[
        str,
        typer.Option(
            "--log-format",
            metavar="|".join(LOG_FORMATS),
            help="text lines, or JSON lines (ts, level, logger, message, task_id, ...).",
        ),
    ] = "text",
) -> None:
    """Run workers: claim tasks, run their handlers, record the outcomes.

    Ctrl-C (or SIGTERM) stops claiming and lets running tasks finish; a second one stops them.
    """
    if log_level.lower() not in LOG_LEVELS:
        raise typer.BadParameter(f"use one of {', '.join(LOG_LEVELS)}", param_hint="'--log-level'")
    if log_format.lower() not in LOG_FORMATS:
        raise typer.BadParameter(
            f"use one of {', '.join(LOG_FORMATS)}", param_hint="'--log-format'"
        )
    chosen: LogFormat = "json" if log_format.lower() == "json" else "text"
    configure_logging(log_level, chosen)
    import_processors(processors or [])
    from worker.runtime.workers import Worker  # the runtime loads only for this command

    async def serve(queue: WorkerQueue) -> dict[str, int]:
        runner = Worker(queue, concurrency=concurrency, queues=queues or None, burst=burst)
        return await runner.run()

    counts = run(ctx, serve, "create", warnings_to_log=chosen == "json")
    summary = ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))
    if chosen == "json":  # stderr holds only JSON lines
        extra = {"event": "worker_summary", "counts": counts}
        logging.getLogger(__name__).info("worker stopped: %s", summary or "no tasks", extra=extra)
    else:
        typer.echo(f"worker stopped: {summary or 'no tasks'}", err=True)

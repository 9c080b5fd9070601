"""``wq worker``: run worker loops on this machine until stopped (or, with --burst, idle)."""

from __future__ import annotations

import importlib
from typing import Annotated, Any

import typer

import worker
from worker.cli.session import ExitCode, fail, load_config, run, usage_error
from worker.queue import WorkerQueue


def import_processors(modules: list[str]) -> None:
    """Import each module so the handlers it decorates register themselves."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            usage_error(f"cannot import processors module {name!r}: {exc}")


def run_worker(
    ctx: typer.Context,
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
) -> None:
    """Run workers: claim tasks, run their handlers, record the outcomes. Ctrl-C stops them."""
    worker_class: Any = getattr(worker, "Worker", None)
    if worker_class is None:
        fail(ExitCode.QUEUE_ERROR, "this installation has no worker runtime (worker.Worker)")
    import_processors(processors or [])
    chosen = concurrency if concurrency is not None else load_config(ctx).concurrency

    async def serve(queue: WorkerQueue) -> None:
        runner = worker_class(queue, concurrency=chosen, queues=queues or None, burst=burst)
        await runner.run()

    run(ctx, serve)

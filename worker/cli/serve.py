"""``wq worker``: run worker loops on this machine until stopped (or, with --burst, idle).

With ``--processes N`` (N > 1), or a task or memory limit (``--max-tasks``,
``--max-memory-mb``), ``wq worker`` is a supervisor (:mod:`worker.runtime.pool`): it migrates
the database once, then runs N children, each ``wq worker --control-fd FD`` with the same
options, the descriptor being the child's control pipe (:mod:`worker.runtime.supervised`).
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer

from worker.cli.logs import LOG_FORMATS, LogFormat, configure_logging
from worker.cli.session import ExitCode, Options, fail, load_config, run, usage_error
from worker.core.limits import MAX_CONCURRENCY

if TYPE_CHECKING:
    from worker.core.config import QueueConfig
    from worker.queue.worker_queue import WorkerQueue
    from worker.runtime.process_metrics import ProcessMetrics
    from worker.runtime.workers import Worker

LOG_LEVELS = ("debug", "info", "warning", "error")


def import_processors(modules: list[str]) -> None:
    """Import each module so the handlers it decorates register themselves.

    Modules (and the functions ``call`` tasks name) are found in the working directory
    too, as ``python -m worker`` finds them: the ``wq`` script's own folder is on the path
    in its place, so ``wq worker -m yourpackage.jobs`` beside ``yourpackage/`` failed. It
    comes last, so that a file there (``greenlet.py``, ``statistics.py``) cannot stand in
    for a module the worker imports; ``python -P`` (safe_path) leaves it out."""
    here = os.getcwd()
    if not sys.flags.safe_path and "" not in sys.path and here not in sys.path:
        sys.path.append(here)
    for name in modules:
        if not _MODULE_NAME.fullmatch(name):  # importlib's own refusals are no ImportError
            usage_error(f"-m {name!r}: a module's dotted name, like yourpackage.jobs")
        try:
            importlib.import_module(name)
        except ImportError as exc:
            usage_error(f"cannot import processors module {name!r}: {exc}")


def _check_queues(names: list[str]) -> None:
    """Refuse a bad ``--queue`` before the worker starts: it would fail every claim."""
    from worker.core.arguments import queue_name
    from worker.core.errors import InvalidInputError

    for name in names:
        try:
            queue_name("--queue", name)
        except InvalidInputError as refused:
            usage_error(str(refused))


#: A module's dotted name (``a.b.c``), what ``-m`` takes.
_MODULE_NAME = re.compile(r"[^\W\d]\w*(\.[^\W\d]\w*)*")


def run_worker(
    ctx: typer.Context,
    *,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            "-c",
            min=1,
            max=MAX_CONCURRENCY,
            help="Tasks at once [QUEUE_CONCURRENCY].",
        ),
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
            help="Import to register handlers and task functions (repeat); found in the "
            "working directory too.",
        ),
    ] = None,
    burst: Annotated[
        bool, typer.Option("--burst", help="Exit once no task is due (tests, cron jobs).")
    ] = False,
    processes: Annotated[
        int | None,
        typer.Option(
            "--processes",
            "-p",
            min=1,
            max=1024,
            help="Worker processes under one supervisor [QUEUE_WORKER_PROCESSES].",
        ),
    ] = None,
    max_tasks: Annotated[
        int | None,
        typer.Option(
            "--max-tasks",
            min=0,
            metavar="N",
            help="Replace a worker process after N tasks; 0: never [QUEUE_WORKER_MAX_TASKS].",
        ),
    ] = None,
    max_memory_mb: Annotated[
        int | None,
        typer.Option(
            "--max-memory-mb",
            min=0,
            max=1 << 24,
            metavar="MIB",
            help="Replace a worker process whose memory passes MIB; 0: never "
            "[QUEUE_WORKER_MAX_MEMORY_MB].",
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=0,
            max=65535,
            metavar="PORT",
            help="Serve this process's Prometheus metrics on 127.0.0.1:PORT; 0: none "
            "[QUEUE_WORKER_METRICS_PORT].",
        ),
    ] = None,
    control_fd: Annotated[
        int | None,
        typer.Option("--control-fd", hidden=True, help="A pool's child: its control pipe."),
    ] = None,
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
    With --processes N (or a task or memory limit), a supervisor runs N worker processes,
    restarts any that dies and replaces any that reaches its limit.
    """
    if log_level.lower() not in LOG_LEVELS:
        raise typer.BadParameter(f"use one of {', '.join(LOG_LEVELS)}", param_hint="'--log-level'")
    if log_format.lower() not in LOG_FORMATS:
        raise typer.BadParameter(
            f"use one of {', '.join(LOG_FORMATS)}", param_hint="'--log-format'"
        )
    chosen: LogFormat = "json" if log_format.lower() == "json" else "text"
    _check_queues(queues or [])
    configure_logging(log_level, chosen)
    config = load_config(ctx, warnings_to_log=chosen == "json")
    tasks_limit = config.worker_max_tasks if max_tasks is None else max_tasks
    memory_limit = config.worker_max_memory_mb if max_memory_mb is None else max_memory_mb
    pool_size = config.worker_processes if processes is None else processes
    port = config.worker_metrics_port if metrics_port is None else metrics_port
    # Before any processor loads (here or in the children, which inherit it): CPU-bound
    # handlers size their thread pools by it (see worker.runtime.cores).
    from worker.runtime.cores import export_task_threads, task_threads

    per_process = concurrency or config.concurrency
    export_task_threads(config.task_threads or task_threads(pool_size, per_process))
    if control_fd is None and (pool_size > 1 or tasks_limit or memory_limit):
        if port:  # each process would need a port of its own
            usage_error(
                "--metrics-port (QUEUE_WORKER_METRICS_PORT) serves one worker process: "
                "not with --processes, --max-tasks or --max-memory-mb"
            )
        # The children import the processors modules: a bad one is their usage error (exit 2).
        child = ["--log-level", log_level, "--log-format", log_format, "--max-tasks",
                 str(tasks_limit), "--max-memory-mb", str(memory_limit)]  # fmt: skip
        child += ["-c", str(concurrency)] if concurrency else []
        child += [arg for name in queues or [] for arg in ("-q", name)]
        child += [arg for module in processors or [] for arg in ("--processors", module)]
        child += ["--burst"] if burst else []
        command = [*_global_options(ctx), "worker", *child]
        _supervise(ctx, config, command, pool_size, burst=burst, json_lines=chosen == "json")
        return
    import_processors(processors or [])
    from worker.runtime.workers import Worker  # the runtime loads only for this command

    metrics = _process_metrics(port) if port else None

    runner: Worker | None = None

    async def serve(queue: WorkerQueue) -> dict[str, int]:
        nonlocal runner
        runner = Worker(queue, concurrency=concurrency, queues=queues or None, burst=burst,
                        max_tasks=tasks_limit, max_memory_mb=memory_limit)  # fmt: skip
        if metrics is not None:
            metrics.attach(runner)
        if control_fd is None:
            return await runner.run()
        return await _supervised(runner, control_fd)

    counts = run(ctx, serve, "create", warnings_to_log=chosen == "json", config=config)
    summary = ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))
    retired = None if runner is None or runner.stopping else runner.retired
    ended = "stopped" if retired is None else f"retired ({retired})"
    if chosen == "json":  # stderr holds only JSON lines
        extra = {"event": "worker_summary", "counts": counts}
        logging.getLogger(__name__).info("worker %s: %s", ended, summary or "no tasks", extra=extra)
    else:
        typer.echo(f"worker {ended}: {summary or 'no tasks'}", err=True)
    if retired is not None:
        raise typer.Exit(int(ExitCode.RETIRED))


def _process_metrics(port: int) -> ProcessMetrics:
    """This process's metrics, served on 127.0.0.1:``port`` (a usage error, naming the
    extra, without prometheus-client; one error line if the port is taken)."""
    from worker.runtime.process_metrics import MetricsMissingError, ProcessMetrics

    try:
        metrics = ProcessMetrics()
    except MetricsMissingError as exc:
        usage_error(str(exc))
    try:
        metrics.serve(port)
    except OSError as exc:
        fail(ExitCode.USAGE, f"cannot serve metrics on 127.0.0.1:{port}: {exc.strerror or exc}")
    logging.getLogger(__name__).info("serving metrics on http://127.0.0.1:%d/metrics", port)
    return metrics


async def _supervised(runner: Worker, control_fd: int) -> dict[str, int]:
    """Run ``runner`` while following its supervisor's orders on ``control_fd``."""
    import asyncio

    from worker.runtime.supervised import follow_supervisor

    follower = asyncio.create_task(follow_supervisor(control_fd, runner))
    try:
        return await runner.run()
    finally:
        follower.cancel()
        await asyncio.wait([follower])
        if not follower.cancelled() and (error := follower.exception()) is not None:
            raise error


def _global_options(ctx: typer.Context) -> list[str]:
    """``python -m worker`` and the global options this ``wq`` was given."""
    options = ctx.find_object(Options) or Options()
    database = [] if options.database is None else ["--db", options.database]
    return [sys.executable, "-m", "worker", *database, *(["--debug"] if options.debug else [])]


def _supervise(
    ctx: typer.Context,
    config: QueueConfig,
    child: Sequence[str],
    processes: int,
    *,
    burst: bool,
    json_lines: bool,
) -> None:
    """Migrate the database once (its errors are the supervisor's, with their exit codes),
    then run the pool of ``processes`` children until it ends; exit with its code."""

    async def ready(queue: WorkerQueue) -> None:
        return None

    run(ctx, ready, "create", warnings_to_log=json_lines, config=config)
    from worker.runtime.pool import Pool

    pool = Pool(lambda fd: [*child, "--control-fd", str(fd)], processes, burst=burst)
    try:
        code = pool.run()
    except KeyboardInterrupt:  # before its own handlers were in: no child has started
        fail(ExitCode.INTERRUPTED, "interrupted")
    counts = pool.counts
    summary = (f"{counts.started} worker process(es) started, {counts.restarted} restarted "
               f"after an unexpected exit, {counts.retired} retired")  # fmt: skip
    if json_lines:
        extra = {"event": "pool_summary", "counts": asdict(counts)}
        logging.getLogger(__name__).info("pool stopped: %s", summary, extra=extra)
    else:
        typer.echo(f"pool stopped: {summary}", err=True)
    raise typer.Exit(code)

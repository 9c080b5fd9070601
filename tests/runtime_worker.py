"""A test request kind and its handler, and a worker run as a separate OS process.

Usage: ``python -m tests.runtime_worker --db URL [options]`` from the repository root. The
worker registers the ``job`` handler (below), writes ``--ready-file`` once it runs, and runs a
:class:`worker.Worker` until a signal (or, with ``--burst``, until the queue runs dry). It exits
(code 6) if its parent goes away, so that an orphan cannot live on. ``--clock-skew S`` sets
the process's clock (``time.time``) S seconds off, as on a machine whose clock is wrong.

The ``job`` handler appends ``started <task id> <attempt>`` and ``done <task id> <attempt>``
lines to the request's ``log`` file and sleeps ``seconds[attempt - 1]`` (the last entry
repeats) in between. With ``--runs-file``, each run also appends ``started``/``done <task id>
<attempt> <time>`` there (a file per worker: which process ran what and when, by this
machine's clock, for the chaos tests).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from pydantic import BaseModel, Field, JsonValue

from tests.support import url_of
from worker import (
    ProcessorRegistry,
    QueueConfig,
    Task,
    TaskContext,
    TaskItem,
    TaskState,
    Worker,
    WorkerQueue,
    register_request_kind,
)

EXIT_ORPHANED = 6


@register_request_kind("job")
class JobRequest(BaseModel):
    """A test job: what the ``job`` handler should do."""

    log: str | None = None
    seconds: list[float] = Field(default_factory=lambda: [0.0])
    name: str = ""


def job_task(**fields: object) -> Task:
    request = JobRequest(**{k: v for k, v in fields.items() if k in JobRequest.model_fields})
    rest = {k: v for k, v in fields.items() if k not in JobRequest.model_fields}
    return Task(items=[TaskItem(request=request)], **rest)


async def add(a: float, b: float) -> float:
    """An async function for ``call`` tasks."""
    await asyncio.sleep(0)
    return a + b


def runtime_config(db: str | Path, **fields: object) -> QueueConfig:
    """Settings for runtime tests on ``db`` (a URL, or a SQLite file's path): real time,
    short intervals, retries due at once."""
    values: dict[str, object] = {
        "database_url": url_of(db),
        "default_visibility_timeout": 5.0,
        "retry_base_delay": 0.0,
        "sweep_interval": 0.05,
        "poll_interval": 0.1,
        "shutdown_grace": 5.0,
    }
    values.update(fields)
    return QueueConfig.model_validate(values)


async def wait_until(
    check: Callable[[], Awaitable[bool]], within: float, what: str, step: float = 0.02
) -> None:
    """Poll ``check`` until it is true; fail after ``within`` seconds."""
    give_up = time.monotonic() + within
    while not await check():
        if time.monotonic() > give_up:
            raise AssertionError(f"not {what} after {within} s")
        await asyncio.sleep(step)


async def task_state_is(queue: WorkerQueue, task_id: str, *states: TaskState) -> bool:
    return (await queue.get_task(task_id)).state in states


async def run_until_completed(queue: WorkerQueue, task_id: str, within: float) -> Worker:
    """Run a ``job`` worker in this process until the task completes; returns it, stopped."""
    heir = Worker(queue, job_registry(), handle_signals=False)
    job = asyncio.create_task(heir.run())
    try:
        await wait_until(
            lambda: task_state_is(queue, task_id, TaskState.COMPLETED), within, "completed"
        )
    finally:
        heir.request_stop()
        async with asyncio.timeout(10):
            await job
    return heir


def note(path: str | None, line: str) -> None:
    if path is not None:
        with Path(path).open("a") as out:
            out.write(line + "\n")


async def job(item: TaskItem, ctx: TaskContext) -> JsonValue:
    request = item.request
    assert isinstance(request, JobRequest)
    attempt = ctx.task.attempt_count
    note(request.log, f"started {ctx.task.id} {attempt}")
    await asyncio.sleep(request.seconds[min(attempt, len(request.seconds)) - 1])
    note(request.log, f"done {ctx.task.id} {attempt}")
    return {"pid": os.getpid(), "attempt": attempt}


def job_registry(runs_file: str | None = None) -> ProcessorRegistry:
    registry = ProcessorRegistry()
    registry.add("job", job if runs_file is None else recorded_job(runs_file))
    return registry


def recorded_job(runs_file: str) -> Callable[[TaskItem, TaskContext], Awaitable[JsonValue]]:
    """``job``, noting each run in ``runs_file`` as well (the request's own log may be None)."""

    async def run(item: TaskItem, ctx: TaskContext) -> JsonValue:
        attempt = ctx.task.attempt_count
        note(runs_file, f"started {ctx.task.id} {attempt} {time.time():.3f}")
        result = await job(item, ctx)
        note(runs_file, f"done {ctx.task.id} {attempt} {time.time():.3f}")
        return result

    return run


def skew_machine_clock(skew_s: float) -> None:
    """Set this process's clock ``skew_s`` seconds off, as on a machine whose clock is wrong:
    whatever reads ``time.time`` from now on (the queue's clock among them) reads it skewed."""
    real = time.time
    time.time = lambda: real() + skew_s


async def watch_parent(worker: Worker) -> None:
    parent = os.getppid()
    while True:
        await asyncio.sleep(0.2)
        if os.getppid() != parent:
            break
    print("parent process is gone; exiting", file=sys.stderr, flush=True)
    os._exit(EXIT_ORPHANED)


async def announce_ready(worker: Worker, ready: Path) -> None:
    """Write ``ready`` once the worker runs and handles SIGTERM (a test may send it then)."""
    await worker.started.wait()
    scratch = ready.with_name(ready.name + ".tmp")
    scratch.write_text(json.dumps({"pid": os.getpid(), "worker_id": worker.id}))
    os.replace(scratch, ready)


async def main_async(args: argparse.Namespace) -> int:
    config = runtime_config(
        args.db,
        default_visibility_timeout=args.visibility_timeout,
        shutdown_grace=args.grace,
        sweep_interval=args.sweep_interval,
        schedule_interval=args.schedule_interval,
        poll_interval=0.2,
        **{
            name: value
            for name, value in (
                ("heartbeat_interval", args.heartbeat_interval),
                ("worker_dead_after", args.dead_after),
            )
            if value is not None
        },
    )
    if args.clock_skew:
        skew_machine_clock(args.clock_skew)
    async with WorkerQueue(config) as queue:
        registry = job_registry(args.runs_file)
        worker = Worker(queue, registry, concurrency=args.concurrency, burst=args.burst)
        if args.report_file is not None:
            report = args.report_file
            worker.register_callback("task_completed", lambda event: note(report, event.task.id))
        watchdog = asyncio.create_task(watch_parent(worker))
        announce = asyncio.create_task(announce_ready(worker, Path(args.ready_file)))
        counts = await worker.run()
        watchdog.cancel()
        announce.cancel()
    print("COUNTS " + json.dumps(counts), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    top = argparse.ArgumentParser(prog="python -m tests.runtime_worker", description=__doc__)
    top.add_argument("--db", required=True, help="database URL (or SQLite file)")
    top.add_argument("--ready-file", required=True)
    top.add_argument("--visibility-timeout", type=float, default=30.0)
    top.add_argument("--grace", type=float, default=30.0)
    top.add_argument("--concurrency", type=int, default=2)
    top.add_argument("--burst", action="store_true")
    top.add_argument("--sweep-interval", type=float, default=0.2)
    top.add_argument("--schedule-interval", type=float, default=1.0)
    top.add_argument("--report-file", default=None, help="Append each completed task's id.")
    top.add_argument("--heartbeat-interval", type=float, default=None)
    top.add_argument("--dead-after", type=float, default=None)
    top.add_argument("--runs-file", default=None, help="Append each job run (see above).")
    top.add_argument(
        "--clock-skew", type=float, default=0.0, help="Set this process's clock this many s off."
    )
    args = top.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())

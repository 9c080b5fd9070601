"""Liveness benchmark: how fast a cancel reaches a running handler, and a dead worker's tasks
come back, with default settings (an hour's visibility timeout).

    .venv/bin/python bench/bench_liveness.py [--samples N] [--runs K] [--quick] [--json PATH]

1. Cancel latency: a handler runs until cancelled; the bench asks for the cancel and the
   handler notes when ``CancelledError`` reached it. From the worker's own queue object (in
   process: a poke), from another queue object in the same process, and from another process
   (both through the database files). ``--samples`` each; p50 / p99 / max.
2. Recovery after ``kill -9``: a worker process runs a long task and is killed; an idle
   worker in another process runs it again. Time from the kill to the second start; the
   settings' bound is ``worker_dead_after`` + ``sweep_interval`` (15 + 5 s). ``--runs`` kills
   (none with ``--quick``, which also takes 3 samples of each cancel).

One machine clock for all times (``time.time()``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import signal
import sqlite3
import statistics
import tempfile
import time
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

from pydantic import BaseModel

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


@register_request_kind("bench-sleep")
class Sleep(BaseModel):
    """Sleep until cancelled; note the start and the interruption in ``log``."""

    log: str


async def sleep(item: TaskItem, ctx: TaskContext) -> None:
    request = item.request
    assert isinstance(request, Sleep)
    note(request.log, f"started {ctx.task.id} {time.time():.6f}")
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        note(request.log, f"interrupted {ctx.task.id} {time.time():.6f}")
        raise


def note(path: str, line: str) -> None:
    with Path(path).open("a") as out:
        out.write(line + "\n")


def events(path: Path, what: str, task_id: str) -> list[float]:
    if not path.exists():
        return []
    return [
        float(at)
        for kind, tid, at in (line.split() for line in path.read_text().splitlines())
        if kind == what and tid == task_id
    ]


def registry() -> ProcessorRegistry:
    handlers = ProcessorRegistry(builtins=False, entry_points=False)
    handlers.add("bench-sleep", sleep)
    return handlers


def config(path: Path) -> QueueConfig:
    return QueueConfig(database_url=f"sqlite+aiosqlite:///{path}")  # the defaults otherwise


async def until(check: Any, within: float = 60.0) -> None:
    give_up = time.monotonic() + within
    while not await check():
        if time.monotonic() > give_up:
            raise RuntimeError("timed out")
        await asyncio.sleep(0.002)


def percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered):.0f} / p99 {p99:.0f} / max {ordered[-1]:.0f} ms"


async def cancel_once(asker: WorkerQueue, queue: WorkerQueue, log: Path) -> float:
    task = Task(items=[TaskItem(request=Sleep(log=str(log)))])
    await queue.enqueue([task])
    await until(lambda: _started(log, task.id))
    asked = time.time()
    await asker.mark_as_cancelled(task.id)
    await until(lambda: _interrupted(log, task.id))
    return (events(log, "interrupted", task.id)[0] - asked) * 1000


async def _started(log: Path, task_id: str) -> bool:
    return bool(events(log, "started", task_id))


async def _interrupted(log: Path, task_id: str) -> bool:
    return bool(events(log, "interrupted", task_id))


async def cancels_in_process(root: Path, samples: int) -> dict[str, list[float]]:
    path = root / "cancel-in-process.db"
    log = root / "cancel-in-process.log"
    found: dict[str, list[float]] = {"same queue": [], "another queue object": []}
    async with WorkerQueue(config(path)) as queue, WorkerQueue(config(path)) as other:
        worker = Worker(queue, registry(), handle_signals=False)
        job = asyncio.create_task(worker.run())
        try:
            for _ in range(samples):
                found["same queue"].append(await cancel_once(queue, queue, log))
                found["another queue object"].append(await cancel_once(other, queue, log))
        finally:
            worker.request_stop(force=True)
            await job
    return found


def worker_process(path: str, ready: MpEvent) -> None:
    async def main() -> None:
        async with WorkerQueue(config(Path(path))) as queue:
            worker = Worker(queue, registry())
            job = asyncio.create_task(worker.run())
            ready.set()
            await job

    asyncio.run(main())


def start_worker(path: Path) -> BaseProcess:
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    child = context.Process(target=worker_process, args=(str(path), ready))
    child.start()
    if not ready.wait(60):
        raise RuntimeError("the worker process did not start")
    return child


def stop(child: BaseProcess) -> None:
    if child.is_alive() and child.pid is not None:
        os.kill(child.pid, signal.SIGTERM)
    child.join(timeout=60)
    if child.is_alive():
        child.kill()


def cancels_across_processes(root: Path, samples: int) -> list[float]:
    path = root / "cancel-processes.db"
    log = root / "cancel-processes.log"
    asyncio.run(_open(path))
    child = start_worker(path)
    try:

        async def ask() -> list[float]:
            async with WorkerQueue(config(path)) as queue:
                return [await cancel_once(queue, queue, log) for _ in range(samples)]

        return asyncio.run(ask())
    finally:
        stop(child)


async def _open(path: Path) -> None:
    async with WorkerQueue(config(path)):
        pass


def recovery_after_kill(root: Path, run: int) -> float:
    path = root / f"kill-{run}.db"
    log = root / f"kill-{run}.log"
    asyncio.run(_open(path))
    doomed = start_worker(path)
    heir: BaseProcess | None = None
    try:

        async def kill_and_wait() -> float:
            async with WorkerQueue(config(path)) as queue:
                task = Task(items=[TaskItem(request=Sleep(log=str(log)))])
                await queue.enqueue([task])
                await until(lambda: _started(log, task.id))
                assert doomed.pid is not None
                os.kill(doomed.pid, signal.SIGKILL)
                killed = time.time()
                nonlocal heir
                heir = start_worker(path)

                async def restarted() -> bool:
                    return len(events(log, "started", task.id)) >= 2

                await until(restarted, within=120)
                assert (await queue.get_task(task.id)).state is TaskState.PROCESSING
                return events(log, "started", task.id)[1] - killed

        return asyncio.run(kill_and_wait())
    finally:
        doomed.join(timeout=10)
        if heir is not None:
            stop(heir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--samples", type=int, default=30, help="cancels of each kind")
    parser.add_argument("--runs", type=int, default=3, help="kill -9 recoveries")
    parser.add_argument("--quick", action="store_true", help="3 cancels each, no kills")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.quick:
        args.samples, args.runs = 3, 0
    defaults = QueueConfig()
    print("== how it was run ==")
    print(f"  python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, "
          f"cpus {os.cpu_count()}, load {os.getloadavg()}")  # fmt: skip
    hour = defaults.default_visibility_timeout
    print(f"  default settings: visibility timeout {hour:g} s, "
          f"heartbeat {defaults.heartbeat_interval:g} s, "
          f"dead after {defaults.worker_dead_after:g} s, "
          f"sweep every {defaults.sweep_interval:g} s")  # fmt: skip
    root = Path(tempfile.mkdtemp(prefix="bench-liveness-"))
    figures: dict[str, Any] = {}
    found = asyncio.run(cancels_in_process(root, args.samples))
    found["another process"] = cancels_across_processes(root, args.samples)
    print("== cancel of a running task: ask -> CancelledError in the handler ==")
    for asker, values in found.items():
        figures[f"cancel_{asker.replace(' ', '_')}_ms"] = sorted(values)
        print(f"  from {asker}: {percentiles(values)} ({len(values)} cancels)")
    recoveries = [recovery_after_kill(root, run) for run in range(args.runs)]
    figures["kill_recovery_s"] = recoveries
    bound = defaults.worker_dead_after + defaults.sweep_interval
    if recoveries:
        print("== kill -9 of a worker: kill -> the task starts again in another worker ==")
        print(f"  {' / '.join(f'{r:.1f}' for r in recoveries)} s -> median "
              f"{statistics.median(recoveries):.1f} s (bound by the settings: {bound:g} s; "
              f"without liveness: the visibility timeout, {hour:g} s)")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()

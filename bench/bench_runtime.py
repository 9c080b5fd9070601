"""Runtime benchmark: no-op tasks through real workers, and cross-process pickup latency.

    .venv/bin/python bench/bench_runtime.py [--runs N] [--quick] [--json PATH]

1. Throughput: N no-op tasks enqueued, then drained by ``Worker(..., burst=True)`` (the full
   runtime: claims, handlers, batched acks, heartbeats, sweeper), in one process and in two
   processes on one file. Timed from the workers' start to the last one's exit.
2. Pickup latency: a worker idles in another process; the bench enqueues one task at a time
   and the handler records when it started. Latency = start - enqueue (one machine clock);
   each run's p50 and p99 are printed.

Each figure is the median of ``--runs`` runs; every run uses a fresh database file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import shutil
import sqlite3
import statistics
import tempfile
import time
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
    Worker,
    WorkerQueue,
    register_request_kind,
)

PICKUP_AIM_MS = 20.0
THROUGHPUT_AIM = 10_000.0


@register_request_kind("bench-noop")
class Noop(BaseModel):
    """A task that does nothing; ``sent_at`` is when the bench enqueued it."""

    sent_at: float = 0.0


async def noop(item: TaskItem, ctx: TaskContext) -> float:
    return time.time()


def registry() -> ProcessorRegistry:
    handlers = ProcessorRegistry(builtins=False, entry_points=False)
    handlers.add("bench-noop", noop)
    return handlers


Where = Path | str  # a SQLite file, or a PostgreSQL database's URL


def database_url(where: Where) -> str:
    if isinstance(where, str) and where.startswith("postgresql"):
        return where
    return f"sqlite+aiosqlite:///{where}"


def config(where: Where) -> QueueConfig:
    return QueueConfig(
        database_url=database_url(where),
        concurrency=100,
        sweep_interval=1.0,
        poll_interval=0.5,
    )


async def fill(where: Where, count: int) -> None:
    async with WorkerQueue(config(where)) as queue:
        for start in range(0, count, 5000):
            size = min(5000, count - start)
            await queue.enqueue([Task(items=[TaskItem(request=Noop())]) for _ in range(size)])


async def drain(where: Where) -> dict[str, int]:
    async with WorkerQueue(config(where)) as queue:
        worker = Worker(queue, registry(), burst=True, handle_signals=False)
        return await worker.run()


def drain_process(where: Where, go: MpEvent) -> None:
    go.wait()
    asyncio.run(drain(where))


async def completed(where: Where) -> int:
    async with WorkerQueue(config(where)) as queue:
        return (await queue.get_queue_stats())["completed"]


def throughput(where: Where, count: int, processes: int) -> float:
    """No-op tasks/s through ``processes`` workers draining ``count`` tasks from new ``where``."""
    asyncio.run(fill(where, count))
    if processes == 1:
        started = time.perf_counter()
        counts = asyncio.run(drain(where))
        elapsed = time.perf_counter() - started
        if counts["completed"] != count:
            raise RuntimeError(f"drained {counts} of {count}")
        return count / elapsed
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    children = [context.Process(target=drain_process, args=(where, go)) for _ in range(processes)]
    for child in children:
        child.start()
    time.sleep(2.0)  # let the children import and open the database
    started = time.perf_counter()
    go.set()
    for child in children:
        child.join(timeout=300)
        if child.exitcode != 0:
            raise RuntimeError(f"a worker process exited with {child.exitcode}")
    elapsed = time.perf_counter() - started
    if (done := asyncio.run(completed(where))) != count:
        raise RuntimeError(f"{done} of {count} tasks completed")
    return count / elapsed


def idle_worker_process(where: Where, ready: MpEvent, stop: MpEvent) -> None:
    async def main() -> None:
        async with WorkerQueue(config(where)) as queue:
            worker = Worker(queue, registry(), concurrency=4, handle_signals=False)
            job = asyncio.create_task(worker.run())
            ready.set()
            await asyncio.to_thread(stop.wait)  # a multiprocessing event: wait off the loop
            worker.request_stop()
            await job

    asyncio.run(main())


def pickup(where: Where, samples: int) -> list[float]:
    """Milliseconds from enqueue to the handler starting in an idle worker process (on a
    new ``where``)."""
    asyncio.run(fill(where, 0))
    context = multiprocessing.get_context("spawn")
    ready, stop = context.Event(), context.Event()
    child = context.Process(target=idle_worker_process, args=(where, ready, stop))
    child.start()
    try:
        if not ready.wait(60):
            raise RuntimeError("the worker process did not start")
        time.sleep(1.5)  # idle, as a waiting worker is

        async def send() -> list[str]:
            ids = []
            async with WorkerQueue(config(where)) as queue:
                for _ in range(samples):
                    task = Task(items=[TaskItem(request=Noop(sent_at=time.time()))])
                    await queue.enqueue([task])
                    ids.append(task.id)
                    await asyncio.sleep(0.05)
                deadline = time.monotonic() + 30
                while (await queue.get_queue_stats())["completed"] < samples:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the worker did not finish the pickup tasks")
                    await asyncio.sleep(0.05)
                latencies = []
                for task_id in ids:
                    done = await queue.get_task(task_id)
                    result = done.items[0].result
                    assert isinstance(result, float)
                    request = done.items[0].request
                    assert isinstance(request, Noop)
                    latencies.append((result - request.sent_at) * 1000)
                return [f"{x:.6f}" for x in latencies]

        return [float(x) for x in asyncio.run(send())]
    finally:
        stop.set()
        child.join(timeout=30)
        if child.is_alive():
            child.kill()


def median_of(runs: list[float]) -> float:
    return statistics.median(runs)


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile (``share`` 0.99: the p99) of ``values``."""
    ordered = sorted(values)
    return ordered[int(share * (len(ordered) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    count, samples = (2_000, 20) if args.quick else (20_000, 100)
    print("== how it was run ==")
    print(f"  python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, "
          f"cpus {os.cpu_count()}, load {os.getloadavg()}")  # fmt: skip
    print(f"  {count:,} no-op tasks, Worker(concurrency=100, burst=True); {samples} pickups")
    root = Path(tempfile.mkdtemp(prefix="bench-runtime-"))
    figures: dict[str, Any] = {}
    try:
        for processes in (1, 2):
            runs = [
                throughput(
                    root / f"throughput-{processes}-{time.monotonic_ns()}.db", count, processes
                )
                for _ in range(args.runs)
            ]
            figures[f"workers_{processes}_proc_tasks_per_s"] = median_of(runs)
            shown = " / ".join(f"{r:,.0f}" for r in runs)
            print(f"  through Worker, {processes} process(es): {shown} "
                  f"-> median {median_of(runs):,.0f} tasks/s")  # fmt: skip
        latencies = [
            pickup(root / f"pickup-{time.monotonic_ns()}.db", samples) for _ in range(args.runs)
        ]
        p50s = [statistics.median(run) for run in latencies]
        p99s = [percentile(run, 0.99) for run in latencies]
        figures["pickup_p50_ms"] = median_of(p50s)
        figures["pickup_p99_ms"] = median_of(p99s)
        print(f"  cross-process pickup p50 per run: {' / '.join(f'{p:.1f}' for p in p50s)} "
              f"-> median {median_of(p50s):.1f} ms")  # fmt: skip
        print(f"  cross-process pickup p99 per run: {' / '.join(f'{p:.1f}' for p in p99s)} "
              f"-> median {median_of(p99s):.1f} ms ({samples} pickups a run)")  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("== aims ==")
    one = figures["workers_1_proc_tasks_per_s"]
    print(f"  through Worker, 1 process: {one:,.0f} tasks/s, aim >= {THROUGHPUT_AIM:,.0f}: "
          f"{'met' if one >= THROUGHPUT_AIM else 'NOT MET'}")  # fmt: skip
    p50 = figures["pickup_p50_ms"]
    print(f"  cross-process pickup p50: {p50:.1f} ms, aim < {PICKUP_AIM_MS:.0f}: "
          f"{'met' if p50 < PICKUP_AIM_MS else 'NOT MET'}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()

"""Contention benchmark: the hot path's latency while other writes run in the same process.

    .venv/bin/python bench/bench_contention.py [--runs N] [--quick] [--json PATH]

One queue drains its tasks (``dequeue(50)`` + ``complete_many``) while a background coroutine
writes back to back on the same queue: the retry sweep, a queue paused and unpaused. Those
writes go through SQLAlchemy's async API, the hot path through ``Database.transaction``; the
figure is each hot-path call's wall time (p50, p99, max), the median of ``--runs`` runs. It
shows how the process's writers take turns: waiting in SQLite's busy handler (which sleeps
up to 100 ms between tries) makes a long tail.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from tts import TextToSpeechRequest
from worker import Completion, QueueConfig, Task, TaskItem, WorkerQueue


async def one_run(root: Path, count: int) -> tuple[float, float, float]:
    path = root / f"contention-{time.monotonic_ns()}.db"
    config = QueueConfig(database_url=f"sqlite+aiosqlite:///{path}", sqlite_synchronous="NORMAL")
    request = TextToSpeechRequest(text="hello", voice_id="kokoro.af_heart")
    async with WorkerQueue(config) as queue:
        await queue.enqueue([Task(items=[TaskItem(request=request)]) for _ in range(count)])
        stop = asyncio.Event()

        async def background() -> None:
            while not stop.is_set():
                await queue.retry()
                await queue.pause_queue("elsewhere")
                await queue.unpause_queue("elsewhere")

        writer = asyncio.create_task(background())
        waits: list[float] = []
        while True:
            started = time.perf_counter()
            batch = await queue.dequeue(size=50)
            waits.append(time.perf_counter() - started)
            if not batch:
                break
            started = time.perf_counter()
            await queue.complete_many([Completion(t.id, t.lease_id) for t in batch])
            waits.append(time.perf_counter() - started)
        stop.set()
        await writer
    waits.sort()
    return (
        waits[len(waits) // 2] * 1000,
        waits[int(len(waits) * 0.99)] * 1000,
        waits[-1] * 1000,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="600 tasks instead of 6,000")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    count = 600 if args.quick else 6000
    root = Path(tempfile.mkdtemp(prefix="bench_contention_"))
    try:
        runs = [asyncio.run(one_run(root, count)) for _ in range(args.runs)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{count:,} tasks drained in batches of 50 while the sweep and pause/unpause write")
    figures = {}
    for index, name in enumerate(("p50", "p99", "max")):
        values = [run[index] for run in runs]
        figures[name] = statistics.median(values)
        shown = " / ".join(f"{v:.1f}" for v in values)
        print(f"  hot-path call {name:<4} runs: {shown}  -> median {figures[name]:.1f} ms")
    if args.json:
        args.json.write_text(json.dumps({"tasks": count, "ms": figures, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()

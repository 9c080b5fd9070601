"""Worker pools: CPU-bound tasks through ``wq worker --processes 2`` against one process.

    .venv/bin/python bench/bench_pool.py [--runs N] [--quick] [--only piper|piper-1|spin]
        [--json PATH]

Each run uses a fresh SQLite file. ``wq worker -c 1 --processes P`` is started and waited
for (P workers registered, and a warm-up task run by each of them, so that piper's voice is
loaded), then the batch is enqueued and timed from the enqueue to its last completion (the
tasks' ``finished_at``): the pool's throughput, without its start-up. P = 1, then 2; the
speed-up is one process's median time over two's.

1. piper: texts of two sentences each, spoken with the bundled voice into WAV files (the
   ``tts`` kind, as ``wq submit tts`` makes them). Piper's ONNX runtime runs a thread per core
   by default, so one process already keeps more than one core busy; ``--piper-threads 1``
   (``TTS_PIPER_THREADS``) gives each process one. Both are measured: the default, and one
   thread per process.
2. spin: tasks that each burn a fixed amount of CPU time in pure Python (a plain ``def``, run
   in a thread): CPU-bound work that only more processes can spread over the cores.

The machine's load average is printed with each figure: the benchmark is only as good as the
machine is idle.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tts.requests import TextToSpeechRequest
from worker import QueueConfig, Task, TaskContext, TaskItem, WorkerQueue, register_request_kind

ROOT = Path(__file__).resolve().parent.parent
VOICE = "piper.en_US-joe-medium"
AIM = 1.8
SENTENCES = [
    "The queue keeps every task in a database row.",
    "Nothing is lost when a worker dies.",
    "Speech synthesis runs off the event loop, one sentence at a time.",
    "A retried task does not redo the items it already finished.",
    "Results are written under the data directory.",
    "Leases are renewed while a handler runs.",
]
PATIENCE_S = 600.0


@register_request_kind("bench-spin")
class Spin(BaseModel):
    """Burn ``cpu_s`` seconds of this process's CPU time."""

    cpu_s: float


def spin(item: TaskItem, ctx: TaskContext) -> int:
    request = item.request
    assert isinstance(request, Spin)
    give_up, turns = time.thread_time() + request.cpu_s, 0
    while time.thread_time() < give_up:
        turns += sum(range(1000)) and 1
    return turns


if __name__ != "__main__":  # imported by the pool's children (--processors bench.bench_pool)
    from worker import processor

    processor("bench-spin")(spin)


@dataclass(frozen=True)
class Workload:
    """A batch of ``count`` tasks (``make(count)`` builds a fresh one), the warm-up task
    each worker process runs first, and the environment of the pool."""

    name: str
    count: int
    make: Callable[[int], list[Task]]
    warm_up: Callable[[], Task]
    env: dict[str, str]


def speech(count: int, threads: int | None) -> Workload:
    def task(text: str) -> Task:
        return Task(items=[TaskItem(request=TextToSpeechRequest(text=text, voice_id=VOICE))])

    def make(count: int) -> list[Task]:
        pairs = [(SENTENCES[n % len(SENTENCES)], SENTENCES[(n + 1) % len(SENTENCES)])
                 for n in range(count)]  # fmt: skip
        return [task(f"{first} {second}") for first, second in pairs]

    env = {} if threads is None else {"TTS_PIPER_THREADS": str(threads)}
    name = "piper" if threads is None else f"piper, {threads} thread(s) per process"
    return Workload(name, count, make, lambda: task("Warm up."), env)


def spinning(count: int, cpu_s: float) -> Workload:
    def task(seconds: float) -> Task:
        return Task(items=[TaskItem(request=Spin(cpu_s=seconds))])

    return Workload(
        "spin", count, lambda n: [task(cpu_s) for _ in range(n)], lambda: task(0.01), {}
    )


def pool_command(db: Path, processes: int) -> list[str]:
    return [sys.executable, "-m", "worker", "--db", str(db), "worker", "-c", "1",
            "--processes", str(processes), "--processors", "bench.bench_pool",
            "--log-level", "warning"]  # fmt: skip


async def wait_for(
    check: Callable[[], Awaitable[bool]], what: str, proc: subprocess.Popen[bytes]
) -> None:
    give_up = time.monotonic() + PATIENCE_S
    while not await check():
        if proc.poll() is not None:
            raise RuntimeError(f"the pool exited ({proc.returncode}) before {what}")
        if time.monotonic() > give_up:
            raise RuntimeError(f"not {what} after {PATIENCE_S} s")
        await asyncio.sleep(0.05)


def one_run(root: Path, workload: Workload, processes: int) -> tuple[float, float]:
    """Seconds from the enqueue of the batch to its last completion, through a pool of
    ``processes`` on a fresh database under ``root``, and the cores it kept busy."""
    root.mkdir()
    db, data = root / "queue.db", root / "data"
    config = QueueConfig(database_url=f"sqlite+aiosqlite:///{db}", data_dir=data)
    asyncio.run(migrate(config))  # before the pool: it must not race the test's own queue
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUEUE_", "TTS_"))}
    env.update(workload.env, QUEUE_DATA_DIR=str(data), QUEUE_POLL_INTERVAL="0.1")
    log = root / "pool.log"
    with log.open("wb") as out:
        pool = subprocess.Popen(pool_command(db, processes), cwd=ROOT, env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out)  # fmt: skip
    try:
        return asyncio.run(timed(config, workload, processes, pool))
    finally:
        pool.terminate()
        if pool.wait(timeout=120) != 0:
            tail = log.read_text()[-3000:]
            raise RuntimeError(f"the pool exited with {pool.returncode}:\n{tail}")


async def migrate(config: QueueConfig) -> None:
    async with WorkerQueue(config):
        pass


def cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes used so far (Linux's /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


async def timed(
    config: QueueConfig, workload: Workload, processes: int, pool: subprocess.Popen[bytes]
) -> tuple[float, float]:
    """Seconds from the enqueue to the last completion, and the cores the worker processes
    kept busy meanwhile (their CPU seconds over the wall time)."""
    async with WorkerQueue(config) as queue:
        before = await warm_up(queue, workload, processes, pool)
        pids = [w["pid"] for w in await queue.live_workers()]
        tasks = workload.make(workload.count)
        cpu_before, clock_before = cpu_s(pids), time.monotonic()
        started = time.time()
        await queue.enqueue(tasks)

        async def done() -> bool:
            return (await queue.get_queue_stats())["completed"] >= before + len(tasks)

        await wait_for(done, "the batch completed", pool)
        cores = (cpu_s(pids) - cpu_before) / (time.monotonic() - clock_before)
        finished = [(await queue.get_task(task.id)) for task in tasks]
        if any(task.finished_at is None for task in finished):
            raise RuntimeError("a task of the batch did not finish")
        return max(task.finished_at or 0.0 for task in finished) - started, cores


async def warm_up(
    queue: WorkerQueue, workload: Workload, processes: int, pool: subprocess.Popen[bytes]
) -> int:
    """Wait until ``processes`` workers are registered, and each ran a warm-up task; returns
    how many warm-up tasks completed."""

    async def registered() -> bool:
        return len(await queue.live_workers()) >= processes

    await wait_for(registered, f"{processes} workers registered", pool)
    workers = {w["id"] for w in await queue.live_workers()}
    ran: set[str] = set()
    count = 0
    while not ran >= workers:
        if count >= 10 * processes:
            raise RuntimeError(f"the warm-up tasks reached only {len(ran)} of the workers")
        batch = [workload.warm_up() for _ in range(processes)]
        await queue.enqueue(batch)
        count += len(batch)

        async def finished(batch: list[Task] = batch) -> bool:
            states = [(await queue.get_task(t.id)).state.value for t in batch]
            return all(state == "completed" for state in states)

        await wait_for(finished, "the warm-up tasks completed", pool)
        ran |= {str((await queue.get_task(t.id)).worker_id) for t in batch}
    return count


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def measure(workload: Workload, runs: int, root: Path) -> dict[str, Any]:
    times: dict[int, list[float]] = {1: [], 2: []}
    cores: dict[int, list[float]] = {1: [], 2: []}
    loads: list[str] = []
    for run in range(runs):
        for processes in (1, 2):
            loads.append(load())
            directory = root / f"{workload.name.split(',')[0]}-{processes}-{run}-{time.time_ns()}"
            elapsed, busy = one_run(directory, workload, processes)
            times[processes].append(elapsed)
            cores[processes].append(busy)
            print(f"  {workload.name}: {processes} process(es), run {run + 1}: {elapsed:.2f} s, "
                  f"{busy:.2f} cores busy ({loads[-1]})", flush=True)  # fmt: skip
    one, two = statistics.median(times[1]), statistics.median(times[2])
    busy_one, busy_two = statistics.median(cores[1]), statistics.median(cores[2])
    figures = {"tasks": workload.count, "one_process_s": one, "two_processes_s": two,
               "speed_up": one / two, "one_process_cores": busy_one,
               "two_processes_cores": busy_two, "runs": runs, "loads": loads}  # fmt: skip
    verdict = "meets" if one / two >= AIM else "misses"
    print(f"{workload.name}: {workload.count} tasks, one process {one:.2f} s ({busy_one:.2f} "
          f"cores), two {two:.2f} s ({busy_two:.2f} cores): {one / two:.2f}x ({verdict} the aim "
          f"of {AIM}x)", flush=True)  # fmt: skip
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small batches (tests)")
    parser.add_argument(
        "--only",
        choices=["piper", "piper-1", "spin"],
        help="one workload: piper (its default threads), piper-1 (one thread), spin",
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    count = 4 if args.quick else 24
    workloads = []
    if args.only == "piper" or (args.only is None and not args.quick):
        workloads.append(speech(count, None))
    if args.only in (None, "piper-1"):
        workloads.append(speech(count, 1))
    if args.only in (None, "spin"):
        workloads.append(spinning(4 if args.quick else 16, 0.1 if args.quick else 1.0))
    print(f"{os.cpu_count()} CPUs; medians of {args.runs} run(s)", flush=True)
    root = Path(tempfile.mkdtemp(prefix="bench-pool-"))
    try:
        figures = {w.name: measure(w, args.runs, root) for w in workloads}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()

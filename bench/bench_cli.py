"""How long wq's read commands take, start to exit, on a SQLite file of 10,000 tasks.

Each command runs ``--runs`` times as its own process; the figures are the medians of its
wall time and of its CPU time (user + system, from ``getrusage``: what the command itself
costs, whatever else the machine runs). Beside them, the floors every command pays:
Python starting (``python -c pass``), ``wq --help`` (wq and typer loaded), and importing
SQLAlchemy's asyncio extension (what the read commands no longer load).

    .venv/bin/python bench/bench_cli.py [--tasks 10000] [--runs 7] [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tts import TextToSpeechRequest
from worker import QueueConfig, WorkerQueue

AIM_S = 0.3
_HEAVY = "sqlalchemy.ext.asyncio"


async def fill(path: Path, count: int) -> str:
    """A database of ``count`` pending speech tasks; the id of the first."""
    queue = WorkerQueue(QueueConfig(database_url=f"sqlite+aiosqlite:///{path}"))
    await queue.initialize()
    try:
        texts = [f"text {n}" for n in range(count)]
        tasks = await queue.submit_many(
            [TextToSpeechRequest(text=text, voice_id="piper.joe") for text in texts]
        )
        return tasks[0].id
    finally:
        await queue.close()


def timed(command: list[str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one run of ``command`` (it must exit 0)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, env=_env(), check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{command} exited {done.returncode}: {done.stderr.decode()[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _env() -> dict[str, str]:
    """The caller's environment without its ``QUEUE_*`` settings, and with bytecode written.

    An installed package runs from the bytecode its install compiled; a shell that sets
    ``PYTHONDONTWRITEBYTECODE`` would have every run compile this checkout's modules afresh
    (about 0.1 s a command), a cost no user pays.
    """
    skip = ("QUEUE_", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    return {**env, "COLUMNS": "120"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 200 tasks")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if args.quick:
        args.tasks = 200
    wq = str(Path(sys.executable).with_name("wq"))
    with tempfile.TemporaryDirectory() as folder:
        cwd = Path(folder)
        first = asyncio.run(fill(cwd / "q.db", args.tasks))
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "import sqlalchemy.ext.asyncio": [sys.executable, "-c", f"import {_HEAVY}"],
            "wq --help": [wq, "--help"],
            "wq status ID": [wq, "--db", "q.db", "status", first],
            "wq why ID": [wq, "--db", "q.db", "why", first],
            "wq list": [wq, "--db", "q.db", "list"],
            "wq list -s pending --json": [wq, "--db", "q.db", "list", "-s", "pending", "--json"],
            "wq stats": [wq, "--db", "q.db", "stats"],
        }
        for command in commands.values():  # untimed: writes the bytecode the runs then read
            timed(command, cwd)
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(args.runs):  # round robin: a slow moment of the machine hits them all
            for name, command in commands.items():
                runs[name].append(timed(command, cwd))
    print(f"{args.tasks} tasks on SQLite, medians of {args.runs} runs, {os.cpu_count()} cores")
    print(f"{'command':32} {'wall ms':>8} {'cpu ms':>8} {'wall/aim':>9}")
    figures = {}
    for name, found in runs.items():
        wall = statistics.median(w for w, _ in found) * 1000
        cpu = statistics.median(c for _, c in found) * 1000
        figures[name] = {"wall_ms": round(wall, 1), "cpu_ms": round(cpu, 1)}
        aim = f"{wall / (AIM_S * 1000):8.2f}x" if name.startswith("wq") else ""
        print(f"{name:32} {wall:8.0f} {cpu:8.0f} {aim:>9}")
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

"""A queue client run as a separate OS process by ``tests/test_processes.py``.

Usage: ``python -m tests.proc_worker COMMAND --db URL [options]`` from the repository root.

Commands:

``drain``
    Claim batches (``dequeue(size=N)``) and complete them with ``complete_many`` until the queue
    has been empty for ``--empty-polls`` consecutive polls. Every claimed id is written to
    ``--out`` (one per line, flushed before the batch is acknowledged). With ``--go-file`` the
    process initializes, writes ``--ready-file`` and then waits for the go file, so that several
    processes start draining at the same moment.
``enqueue``
    Enqueue ``--count`` tasks in one call, publish their ids in ``--ready-file``, print
    ``ENQUEUED`` and hang (queue still open) until killed.
``claim-and-hang``
    Claim up to ``--count`` tasks, publish ids, leases and expiries in ``--ready-file``, print
    ``CLAIMED`` and hang holding the leases (never acknowledging) until killed.
``enqueue-loop``
    Write ``--ready-file``, then enqueue batches of ``--batch`` tasks forever, printing
    ``ENQUEUING <batch number>`` when a batch is built and about to be handed to ``enqueue`` and
    ``COMMITTED <batch number> <tasks so far>`` after ``enqueue`` returns. Each batch's
    tasks share the name ``<pid>:<batch number>`` so a reader can check batches are whole.
    With ``--kill-in-write N:F`` the process SIGKILLs itself inside batch N's write
    transaction, a fraction F of the way through it (see :class:`KillInWrite`), after
    printing ``KILLING N ...``.

A ready file is written atomically (a temporary file, then ``os.replace``) and holds JSON, so
the parent never reads half of one. A hanging process gives up after ``--hang-seconds`` (exit
code 3), and every command exits (code 6) once its parent is gone, so that an orphan cannot
live on if the test process dies without killing it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from tests.support import database_of, make_task, url_of
from worker import Completion, QueueConfig, WorkerQueue

EXIT_HANG_EXPIRED = 3
EXIT_DEADLINE = 4
EXIT_REFUSED = 5
EXIT_ORPHANED = 6


def write_ready(path: Path, payload: dict[str, Any]) -> None:
    """Publish ``payload`` as JSON at ``path`` atomically."""
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_text(json.dumps(payload))
    os.replace(scratch, path)


def open_for_append(path: Path) -> TextIO:
    return path.open("a")


def announce(line: str) -> None:
    print(line, flush=True)


def make_config(args: argparse.Namespace) -> QueueConfig:
    return QueueConfig(
        database_url=url_of(args.db),
        default_visibility_timeout=float(args.visibility_timeout),
        default_max_attempts=int(args.max_attempts),
        retry_base_delay=0.0,
    )


_PARENT = os.getppid()


def orphaned() -> bool:
    """Whether the process that started this one is gone (then nobody will kill us)."""
    return os.getppid() != _PARENT


def exit_if_orphaned() -> None:
    if orphaned():
        print("parent process is gone; exiting", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_ORPHANED)


async def hang(seconds: float) -> None:
    """Sleep until killed; give up after ``seconds`` or when orphaned."""
    give_up = time.monotonic() + seconds
    while time.monotonic() < give_up:
        exit_if_orphaned()
        await asyncio.sleep(0.1)
    print(f"hung for {seconds} s without being killed; giving up", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_HANG_EXPIRED)


def exists(path: Path) -> bool:
    return path.exists()


async def wait_for_go(go_file: Path, deadline_s: float) -> None:
    give_up = time.monotonic() + deadline_s
    while not exists(go_file):
        exit_if_orphaned()
        if time.monotonic() > give_up:
            print(f"no go file {go_file} after {deadline_s} s", file=sys.stderr, flush=True)
            raise SystemExit(EXIT_DEADLINE)
        await asyncio.sleep(0.005)


# -- commands -----------------------------------------------------------------------------


async def drain(args: argparse.Namespace) -> int:
    out_path = Path(args.out)
    batch = int(args.batch)
    empty_polls = int(args.empty_polls)
    poll_interval = float(args.poll_interval)
    give_up = time.monotonic() + float(args.deadline)
    refused: list[str] = []
    async with WorkerQueue(make_config(args), worker_id=str(args.worker_id)) as queue:
        if args.ready_file is not None:
            write_ready(Path(args.ready_file), {"pid": os.getpid()})
        if args.go_file is not None:
            await wait_for_go(Path(args.go_file), float(args.deadline))
        empty = 0
        with open_for_append(out_path) as out:
            while empty < empty_polls:
                exit_if_orphaned()
                if time.monotonic() > give_up:
                    print("drain deadline passed", file=sys.stderr, flush=True)
                    return EXIT_DEADLINE
                claimed = await queue.dequeue(size=batch)
                if not claimed:
                    empty += 1
                    await asyncio.sleep(poll_interval)
                    continue
                empty = 0
                out.writelines(f"{task.id}\n" for task in claimed)
                out.flush()
                refused += await queue.complete_many(
                    [Completion(task.id, task.lease_id) for task in claimed]
                )
    if refused:
        print(f"complete_many refused {len(refused)}: {refused[:10]}", file=sys.stderr, flush=True)
        return EXIT_REFUSED
    return 0


async def enqueue(args: argparse.Namespace) -> int:
    async with WorkerQueue(make_config(args), worker_id="enqueuer") as queue:
        tasks = [make_task(f"task {index}") for index in range(int(args.count))]
        inserted = await queue.enqueue(tasks)
        # The line first: the test kills this process as soon as the ready file is there,
        # and reads the line after.
        announce("ENQUEUED")
        write_ready(
            Path(args.ready_file),
            {"pid": os.getpid(), "inserted": inserted, "ids": [task.id for task in tasks]},
        )
        await hang(float(args.hang_seconds))
    return 0


async def claim_and_hang(args: argparse.Namespace) -> int:
    async with WorkerQueue(make_config(args), worker_id="doomed") as queue:
        claimed = await queue.dequeue(size=int(args.count))
        announce("CLAIMED " + " ".join(task.id for task in claimed))  # first, as in enqueue
        write_ready(
            Path(args.ready_file),
            {
                "pid": os.getpid(),
                "ids": [task.id for task in claimed],
                "leases": {task.id: task.lease_id for task in claimed},
                "lease_expires_at": {task.id: task.lease_expires_at for task in claimed},
                "attempt_count": {task.id: task.attempt_count for task in claimed},
            },
        )
        await hang(float(args.hang_seconds))
    return 0


class KillInWrite:
    """A SQLite progress handler on the connection enqueue writes on: it counts the virtual
    machine's steps made inside a transaction during batch 1, and in batch ``batch`` it
    kills the process once ``fraction`` of that many steps are made inside one, so that the
    kill lands in the middle of the write, whatever the machine's speed."""

    STEP = 100  # SQLite instructions per call

    def __init__(self, conn: sqlite3.Connection, batch: int, fraction: float) -> None:
        self._conn = conn
        self.batch = batch
        self.fraction = fraction
        self.current = 0
        self.ticks = 0
        self.calibrated = 0
        conn.set_progress_handler(self._tick, self.STEP)

    def starting(self, number: int) -> None:
        if number == 2:
            self.calibrated = self.ticks
        self.current = number
        self.ticks = 0

    def _tick(self) -> int:
        if not self._conn.in_transaction:
            return 0
        self.ticks += 1
        if self.current == self.batch and self.ticks >= max(1, self.fraction * self.calibrated):
            announce(f"KILLING {self.current} at step {self.ticks} of {self.calibrated}")
            os.kill(os.getpid(), signal.SIGKILL)
        return 0


async def kill_in_write(queue: WorkerQueue, spec: str) -> KillInWrite:
    batch, _, fraction = spec.partition(":")
    if int(batch) < 2 or not 0 < float(fraction) < 1:
        raise SystemExit(f"--kill-in-write N:F needs N >= 2 and 0 < F < 1, got {spec!r}")
    driver = await database_of(queue)._writer_driver()  # the connection enqueue writes on
    if driver is None:
        raise SystemExit("--kill-in-write needs the aiosqlite driver")
    return KillInWrite(driver._conn, int(batch), float(fraction))


async def enqueue_loop(args: argparse.Namespace) -> int:
    batch = int(args.batch)
    pid = os.getpid()
    total = 0
    async with WorkerQueue(make_config(args), worker_id="bulk") as queue:
        killer = (
            None if args.kill_in_write is None else await kill_in_write(queue, args.kill_in_write)
        )
        write_ready(Path(args.ready_file), {"pid": pid})
        number = 0
        give_up = time.monotonic() + float(args.hang_seconds)
        while time.monotonic() < give_up:
            exit_if_orphaned()
            number += 1
            tasks = [make_task(f"bulk {index}", name=f"{pid}:{number}") for index in range(batch)]
            if killer is not None:
                killer.starting(number)
            announce(f"ENQUEUING {number}")
            total += await queue.enqueue(tasks)
            announce(f"COMMITTED {number} {total}")
    print("enqueue-loop was never killed; giving up", file=sys.stderr, flush=True)
    return EXIT_HANG_EXPIRED


# -- command line -------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m tests.proc_worker", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--db", required=True, help="database URL (or SQLite file)")
        sub.add_argument("--visibility-timeout", type=float, default=30.0)
        sub.add_argument("--max-attempts", type=int, default=3)
        sub.add_argument("--hang-seconds", type=float, default=60.0)
        return sub

    sub = command("drain", "claim and complete until the queue stays empty")
    sub.add_argument("--out", required=True, help="file to append claimed ids to")
    sub.add_argument("--worker-id", default="drainer")
    sub.add_argument("--batch", type=int, default=25)
    sub.add_argument("--empty-polls", type=int, default=3)
    sub.add_argument("--poll-interval", type=float, default=0.05)
    sub.add_argument("--deadline", type=float, default=60.0, help="give up after this many s")
    sub.add_argument("--ready-file", default=None)
    sub.add_argument("--go-file", default=None)
    sub.set_defaults(run=drain)

    sub = command("enqueue", "enqueue --count tasks, report them, hang")
    sub.add_argument("--count", type=int, required=True)
    sub.add_argument("--ready-file", required=True)
    sub.set_defaults(run=enqueue)

    sub = command("claim-and-hang", "claim --count tasks, report them, hang holding leases")
    sub.add_argument("--count", type=int, required=True)
    sub.add_argument("--ready-file", required=True)
    sub.set_defaults(run=claim_and_hang)

    sub = command("enqueue-loop", "enqueue --batch tasks at a time until killed")
    sub.add_argument("--batch", type=int, default=5000)
    sub.add_argument("--ready-file", required=True)
    sub.add_argument("--kill-in-write", default=None, metavar="N:F")
    sub.set_defaults(run=enqueue_loop)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = asyncio.run(args.run(args))
    return code


if __name__ == "__main__":
    sys.exit(main())

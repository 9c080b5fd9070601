"""A producer run as a separate OS process: enqueues ``job`` tasks in batches.

Usage: ``python -m tests.producer --db URL --count N --ids-file PATH [options]`` from the
repository root. Each batch is one ``WorkerQueue.enqueue``; once it has returned (committed),
its task ids are appended to ``--ids-file``, one a line: the file lists exactly what the
queue accepted, for a test to check that each of them ran to completion. Each task's handler
sleeps a random 5-20 ms (``tests.runtime_worker``'s ``job``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
from pathlib import Path

from tests.runtime_worker import job_task
from worker import QueueConfig, WorkerQueue

#: How long a task's handler sleeps, in seconds: long enough for a kill to land mid-task.
HANDLER_SECONDS = (0.005, 0.02)


def note_ids(path: Path, ids: list[str]) -> None:
    with path.open("a") as out:
        out.write("".join(f"{task_id}\n" for task_id in ids))


async def produce(args: argparse.Namespace) -> None:
    ids = Path(args.ids_file)
    left = args.count
    async with WorkerQueue(QueueConfig(database_url=args.db)) as queue:
        while left > 0:
            batch = [
                job_task(seconds=[random.uniform(*HANDLER_SECONDS)], max_attempts=args.max_attempts)
                for _ in range(min(args.batch, left))
            ]
            await queue.enqueue(batch)
            note_ids(ids, [task.id for task in batch])
            left -= len(batch)
            await asyncio.sleep(args.pause)


def main(argv: list[str] | None = None) -> int:
    top = argparse.ArgumentParser(prog="python -m tests.producer", description=__doc__)
    top.add_argument("--db", required=True, help="The database URL.")
    top.add_argument("--count", type=int, required=True)
    top.add_argument("--ids-file", required=True)
    top.add_argument("--batch", type=int, default=100)
    top.add_argument("--pause", type=float, default=0.1, help="Seconds between batches.")
    top.add_argument("--max-attempts", type=int, default=20)
    args = top.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(produce(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A worker process for the web tests: a ``steps`` request kind whose handler reports its
progress step by step and stops when cancelled.

Usage: ``python -m tests.web_worker --db URL --ready-file PATH`` from the repository root;
it writes the ready file once it runs and stops on SIGTERM (or when its parent is gone).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from pydantic import BaseModel, Field, JsonValue

from tests.runtime_worker import announce_ready, runtime_config, watch_parent
from worker import (
    ProcessorRegistry,
    TaskContext,
    TaskItem,
    Worker,
    WorkerQueue,
    register_request_kind,
)


@register_request_kind("steps")
class StepsRequest(BaseModel):
    """Take ``steps`` steps of ``step_s`` seconds each, reporting progress after each."""

    steps: int = Field(5, ge=1, le=100_000)
    step_s: float = Field(0.5, ge=0, le=60)
    label: str = ""


async def steps(item: TaskItem, ctx: TaskContext) -> JsonValue:
    request = item.request
    assert isinstance(request, StepsRequest)
    await ctx.progress(0, request.steps, f"step 0 of {request.steps}")
    for done in range(1, request.steps + 1):
        await asyncio.sleep(request.step_s)
        await ctx.check_cancelled()
        await ctx.progress(done, request.steps, f"step {done} of {request.steps}")
    return {"steps": request.steps}


async def main_async(db: str, ready: Path) -> int:
    config = runtime_config(db, default_visibility_timeout=30.0, poll_interval=0.2)
    registry = ProcessorRegistry()
    registry.add("steps", steps)
    async with WorkerQueue(config) as queue:
        worker = Worker(queue, registry, concurrency=2)
        watchdog = asyncio.create_task(watch_parent(worker))
        announce = asyncio.create_task(announce_ready(worker, ready))
        await worker.run()
        watchdog.cancel()
        announce.cancel()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.web_worker", description=__doc__)
    parser.add_argument("--db", required=True, help="database URL (or SQLite file)")
    parser.add_argument("--ready-file", required=True)
    args = parser.parse_args()
    return asyncio.run(main_async(args.db, Path(args.ready_file)))


if __name__ == "__main__":
    sys.exit(main())

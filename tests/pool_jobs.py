"""Handlers for pool tests: ``wq worker --processors tests.pool_jobs`` registers them.

``pool_job`` appends ``started <task id> <attempt> <pid>`` and ``done <task id> <attempt>
<pid>`` lines to the request's ``log`` file, keeps ``leak_mb`` MiB alive for the rest of the
process's life (a leak, which the memory limit is for), and sleeps ``seconds[attempt - 1]``
(the last entry repeats) in between.

``spin`` burns CPU in pure Python for ``seconds`` (a plain ``def``: it runs in a thread): a
CPU-bound handler for the pool's benchmark.

Importing ``tests.pool_jobs_crash`` instead ends the process at once, with code 9.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from pydantic import BaseModel, Field, JsonValue

from worker import TaskContext, TaskItem, processor, register_request_kind

MIB = 1 << 20
#: What the leaking jobs keep (never freed while the process lives).
_LEAKED: list[bytes] = []


@register_request_kind("pool_job")
class PoolJob(BaseModel):
    log: str
    seconds: list[float] = Field(default_factory=lambda: [0.0])
    leak_mb: int = 0


@register_request_kind("spin")
class Spin(BaseModel):
    seconds: float


def note(path: str, line: str) -> None:
    with Path(path).open("a") as out:
        out.write(line + "\n")


@processor("pool_job")
async def pool_job(item: TaskItem, ctx: TaskContext) -> JsonValue:
    request = item.request
    assert isinstance(request, PoolJob)
    attempt, pid = ctx.task.attempt_count, os.getpid()
    note(request.log, f"started {ctx.task.id} {attempt} {pid}")
    if request.leak_mb:
        _LEAKED.append(b"\x01" * (request.leak_mb * MIB))  # touched: resident
    await asyncio.sleep(request.seconds[min(attempt, len(request.seconds)) - 1])
    note(request.log, f"done {ctx.task.id} {attempt} {pid}")
    # The share of the cores wq worker gave this process's tasks (worker.runtime.cores).
    return {"pid": pid, "attempt": attempt, "task_threads": os.environ.get("QUEUE_TASK_THREADS")}


@processor("spin")
def spin(item: TaskItem, ctx: TaskContext) -> JsonValue:
    request = item.request
    assert isinstance(request, Spin)
    give_up, turns = time.process_time() + request.seconds, 0
    while time.process_time() < give_up:
        turns += sum(range(1000)) and 1
    return {"pid": os.getpid(), "turns": turns}

"""A worker with a resource capacity never runs more than fits at once."""

from __future__ import annotations

import asyncio

import pytest

from tests.runtime_worker import job_task, runtime_config
from worker import ProcessorRegistry, TaskContext, TaskItem, TaskState, Worker, WorkerQueue
from worker.core.models import Resources

pytestmark = pytest.mark.timeout(30)
GIB = 1 << 30


async def test_capacity_limits_what_runs_together(database_url: str) -> None:
    running: set[str] = set()
    peak_memory = 0

    async def handler(item: TaskItem, ctx: TaskContext) -> int:
        nonlocal peak_memory
        running.add(ctx.task.id)
        peak_memory = max(
            peak_memory,
            sum(needs[t] for t in running),
        )
        await asyncio.sleep(0.05)
        running.discard(ctx.task.id)
        return 1

    registry = ProcessorRegistry()
    registry.add("job", handler)
    async with WorkerQueue(runtime_config(database_url)) as queue:
        tasks = [job_task(resources=Resources(memory_bytes=3 * GIB)) for _ in range(3)]
        tasks += [job_task(resources=Resources(memory_bytes=1 * GIB)) for _ in range(3)]
        await queue.enqueue(tasks)
        needs = {t.id: t.resources.memory_bytes for t in tasks}
        worker = Worker(
            queue,
            registry,
            concurrency=6,
            burst=True,
            handle_signals=False,
            resources=Resources(memory_bytes=4 * GIB, cpu=2),
        )
        async with asyncio.timeout(20):
            counts = await worker.run()
        assert counts["completed"] == 6
        assert 0 < peak_memory <= 4 * GIB
        for task in tasks:
            stored = await queue.get_task(task.id)
            assert stored.state is TaskState.COMPLETED
            assert stored.attempt_count == 1, "tasks given back did not use up an attempt"


def test_a_worker_defaults_to_the_machine_without_a_gpu(database_url: str) -> None:
    from worker.runtime.memory import total_bytes
    from worker.runtime.workers import machine_resources

    assert total_bytes("MemTotal:  2048 kB\nMemAvailable: 1024 kB\n") == 2048 * 1024
    mine = machine_resources()
    assert mine.memory_bytes > 0
    assert mine.cpu >= 1
    assert mine.gpu is False


async def test_a_gpu_task_waits_for_a_worker_with_a_gpu(database_url: str) -> None:
    async def handler(item: TaskItem, ctx: TaskContext) -> int:
        return 1

    registry = ProcessorRegistry()
    registry.add("job", handler)
    async with WorkerQueue(runtime_config(database_url)) as queue:
        gpu_task = job_task(resources=Resources(gpu=True))
        plain = job_task()
        await queue.enqueue([gpu_task, plain])
        cpu_only = Worker(queue, registry, burst=True, handle_signals=False)
        async with asyncio.timeout(20):
            assert (await cpu_only.run())["completed"] == 1
        assert (await queue.get_task(gpu_task.id)).state is TaskState.PENDING
        with_gpu = Worker(
            queue, registry, burst=True, handle_signals=False, resources=Resources(cpu=1, gpu=True)
        )
        async with asyncio.timeout(20):
            assert (await with_gpu.run())["completed"] == 1

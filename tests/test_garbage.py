"""The collector paused for bulk work (worker.core.garbage): blocks that overlap across
threads, a batch written without passes between its slices, and no pause across an await."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from worker import QueueConfig, Task, WorkerQueue, register_request_kind
from worker.core.garbage import paused_collection
from worker.queue import producing


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if was:  # as it was before the test, whatever the test did
        gc.enable()
    else:
        gc.disable()


def test_the_collector_is_on_again_only_once_every_block_has_ended() -> None:
    first, second = paused_collection(), paused_collection()
    first.__enter__()
    second.__enter__()
    assert not gc.isenabled()
    first.__exit__(None, None, None)  # the first one ends while the second is still open
    assert not gc.isenabled()
    second.__exit__(None, None, None)
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    with paused_collection(), paused_collection():
        pass
    assert not gc.isenabled()


def test_a_block_that_raises_turns_the_collector_on_again() -> None:
    with pytest.raises(RuntimeError), paused_collection():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_threads_that_pause_side_by_side_leave_it_on() -> None:
    start = threading.Barrier(8)

    def bulk() -> None:
        start.wait()
        for _ in range(200):
            with paused_collection():
                assert not gc.isenabled()

    threads = [threading.Thread(target=bulk) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert gc.isenabled()


@register_request_kind("test-garbage-echo")
class Echo(BaseModel):
    text: str


def test_a_bulk_submission_runs_no_collection_between_its_slices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tasks of a 20,000-task submit_many are built in slices while its rows are written;
    passes between the slices (started by the insert's thread) walked all they had built."""
    built: list[int] = []
    passes: list[int] = []
    from worker.queue.submission import tasks_of

    def counted(*args: Any) -> list[Task]:
        made = tasks_of(*args)
        built.append(len(made))
        return made

    def on_pass(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and 0 < sum(built) < 20_000:
            passes.append(info["generation"])

    monkeypatch.setattr(producing, "tasks_of", counted)

    async def main() -> None:
        config = QueueConfig(database_url=str(tmp_path / "queue.db"))
        async with WorkerQueue(config) as queue:
            requests = [Echo(text=f"text {i}") for i in range(20_000)]
            gc.callbacks.append(on_pass)
            try:
                tasks = await queue.submit_many(requests)
            finally:
                gc.callbacks.remove(on_pass)
            assert len(tasks) == 20_000
            assert (await queue.get_queue_stats())["pending"] == 20_000

    asyncio.run(main())
    assert len(built) > 1  # in slices, or this test shows nothing
    assert passes == []
    assert gc.isenabled()


def test_a_bulk_submission_leaves_the_collector_on_whenever_it_waits(tmp_path: Path) -> None:
    """No pause spans an await: a submission whose loop closed under it would otherwise
    leave the collector off for the process."""
    seen: list[bool] = []

    async def main() -> None:
        config = QueueConfig(database_url=str(tmp_path / "queue.db"))
        async with WorkerQueue(config) as queue:
            requests = [Echo(text=f"text {i}") for i in range(20_000)]
            submitting = asyncio.ensure_future(queue.submit_many(requests))
            while not submitting.done():  # runs only while the submission waits
                seen.append(gc.isenabled())
                await asyncio.sleep(0)
            await submitting

    asyncio.run(main())
    assert seen  # the submission waited at least once
    assert all(seen)

"""The collector paused for bulk work (worker.core.garbage): blocks that overlap across
coroutines and threads, and a batch written without passes between its slices."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from worker import QueueConfig, WorkerQueue, register_request_kind
from worker.core.garbage import paused_collection


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
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


def test_coroutines_that_pause_across_awaits_leave_it_on() -> None:
    seen: list[bool] = []

    async def bulk(delay: float) -> None:
        with paused_collection():
            await asyncio.sleep(delay)
            seen.append(gc.isenabled())

    async def main() -> None:
        await asyncio.gather(bulk(0.02), bulk(0.01), bulk(0.03))

    asyncio.run(main())
    assert seen == [False, False, False]  # each one's block stayed paused to its end
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


def test_a_bulk_submission_runs_no_collection_while_it_writes(tmp_path: Path) -> None:
    """Passes between the slices of a 20,000-task submit_many walked the whole batch each
    time; now the one pass left starts after the rows are written."""
    passes: list[int] = []
    writing = threading.Event()

    def on_pass(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and writing.is_set():
            passes.append(info["generation"])

    async def main() -> None:
        config = QueueConfig(database_url=str(tmp_path / "queue.db"))
        async with WorkerQueue(config) as queue:
            requests = [Echo(text=f"text {i}") for i in range(20_000)]
            storage = queue._storage
            insert = storage.insert

            async def watched(*args: object, **kwargs: object) -> object:
                writing.set()
                try:
                    return await insert(*args, **kwargs)  # type: ignore[arg-type]
                finally:
                    writing.clear()

            storage.insert = watched  # type: ignore[method-assign,assignment]
            gc.callbacks.append(on_pass)
            try:
                tasks = await queue.submit_many(requests)
            finally:
                gc.callbacks.remove(on_pass)
            assert len(tasks) == 20_000
            assert (await queue.get_queue_stats())["pending"] == 20_000

    asyncio.run(main())
    assert passes == []
    assert gc.isenabled()

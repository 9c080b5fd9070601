"""The collector paused for bulk work (worker.core.garbage): blocks that overlap across
threads, a batch written without passes between its slices, and no pause across an await."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import subprocess
import sys
import textwrap
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from worker import QueueConfig, Task, TaskItem, WorkerQueue, register_request_kind
from worker.core import garbage
from worker.core.garbage import _PAUSES, paused_collection
from worker.queue import producing


@pytest.fixture(autouse=True)
def collector_on(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(_PAUSES, "_frozen_until", float("-inf"))  # what a test froze is gone
    was = gc.isenabled()
    gc.enable()
    yield
    assert _PAUSES._open == 0, "a block was left open"
    if was:  # as it was before the test, whatever the test did
        gc.enable()
    else:
        gc.disable()


def test_the_collector_is_on_again_only_once_every_block_has_ended() -> None:
    with contextlib.ExitStack() as blocks:
        first = blocks.enter_context(contextlib.ExitStack())
        first.enter_context(paused_collection())
        blocks.enter_context(paused_collection())
        assert not gc.isenabled()
        first.close()  # the first one ends while the second is still open
        assert not gc.isenabled()
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


def test_a_block_in_another_thread_keeps_it_off_after_this_one_ends() -> None:
    opened, release = threading.Event(), threading.Event()

    def other() -> None:
        with paused_collection():
            opened.set()
            release.wait(30)

    thread = threading.Thread(target=other)
    try:
        with paused_collection():
            thread.start()
            assert opened.wait(30)
        assert not gc.isenabled()  # the other thread's block is still open
    finally:
        release.set()
        thread.join(30)
    assert gc.isenabled()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX: fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_child_forked_inside_a_block_has_the_collector_on() -> None:
    with paused_collection():
        pid = os.fork()
        if pid == 0:  # the child: no block of its own is open
            ok = gc.isenabled()
            with paused_collection():
                ok = ok and not gc.isenabled()
            os._exit(0 if ok and gc.isenabled() else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX: fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_child_forked_in_the_middle_of_a_move_has_nothing_frozen_and_the_collector_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What another thread's fork sees between a move's ``gc.freeze()`` and its
    ``gc.unfreeze()``, the collector off for it."""
    gc.collect()
    monkeypatch.setattr(_PAUSES, "_moving", True)
    monkeypatch.setattr(_PAUSES, "_turned_off", True)
    gc.disable()
    gc.freeze()
    try:
        pid = os.fork()
        if pid == 0:
            os._exit(0 if gc.get_freeze_count() == 0 and gc.isenabled() else 1)
    finally:
        gc.unfreeze()
        gc.enable()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_finalizer_that_opens_a_block_while_a_batch_is_moved_does_not_hang() -> None:
    """The move holds the blocks' lock: a pass started there, by an allocation, would run
    finalizers, and one that opens a block would wait for that lock for good."""
    program = textwrap.dedent(
        """
        import gc
        from time import perf_counter
        from worker.core import garbage
        from worker.core.garbage import _PAUSES, paused_collection
        opened = []
        counted = garbage._full_passes
        def allocating():  # as any allocation under the lock could
            [[] for _ in range(50)]
            return counted()
        garbage._full_passes = allocating
        garbage.BATCH_WINDOW_S = 3600.0  # every run a batch, however busy the machine
        class Closing:
            def __del__(self):
                with paused_collection():
                    opened.append(1)
        _PAUSES.run_built(perf_counter())
        gc.collect()
        cycle = Closing()
        cycle.me = cycle
        del cycle
        gc.set_threshold(10)
        _PAUSES.run_built(perf_counter())
        gc.set_threshold(700)
        gc.collect()
        assert opened == [1], opened
        """
    )
    done = subprocess.run([sys.executable, "-c", program], timeout=60, check=False)
    assert done.returncode == 0


def generation_of(thing: object) -> int:
    """The collector's generation holding ``thing``."""
    for generation in (0, 1, 2):
        if any(other is thing for other in gc.get_objects(generation=generation)):
            return generation
    raise AssertionError(f"{thing!r} is in no generation (untracked or frozen)")


def containers(count: int) -> list[list[int]]:
    """``count`` new tracked objects."""
    return [[] for _ in range(count)]


def test_what_a_long_block_made_goes_to_the_oldest_generation_unwalked() -> None:
    gc.collect()  # a full pass: the budget is whole, the young generations empty
    with paused_collection():
        made = containers(garbage.PROMOTE_AT)
    assert generation_of(made[-1]) == 2
    assert gc.get_count()[0] < 700  # no young pass is due to walk them


def test_what_a_short_block_made_stays_young() -> None:
    gc.collect()
    with paused_collection():
        made = containers(100)
    assert generation_of(made[-1]) == 0


def test_a_program_that_froze_objects_keeps_them_frozen() -> None:
    gc.collect()
    gc.freeze()  # what a pre-forking server does once it has started
    try:
        frozen = gc.get_freeze_count()
        with paused_collection():
            made = containers(garbage.PROMOTE_AT)
        assert gc.get_freeze_count() == frozen
        assert generation_of(made[-1]) in (0, 1)  # walked as usual
    finally:
        gc.unfreeze()


class Node:
    """An object that can be part of a cycle."""

    other: object = None


def test_cycles_moved_unwalked_are_collected_once_the_budget_is_spent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cycle made during a block that is moved waits for a full pass; the block that
    would move more than the budget since the last one runs it, so what such cycles keep
    alive is bounded whatever the rest of the program does."""
    monkeypatch.setattr(garbage, "PROMOTE_BUDGET", 3 * garbage.PROMOTE_AT)
    gc.collect()
    passes = garbage._full_passes()
    with paused_collection():
        first = containers(2 * garbage.PROMOTE_AT)
        cycle = Node()
        cycle.other = cycle
        gone = weakref.ref(cycle)
        del cycle
    assert generation_of(first[-1]) == 2
    assert gone() is not None  # moved unwalked: it waits for a full pass
    assert garbage._full_passes() == passes
    with paused_collection():
        second = containers(2 * garbage.PROMOTE_AT)  # past the budget
    assert garbage._full_passes() == passes + 1
    assert generation_of(second[-1]) == 2  # walked by that pass
    assert gone() is None
    with paused_collection():
        last = containers(2 * garbage.PROMOTE_AT)
    assert generation_of(last[-1]) == 2  # a new budget


@register_request_kind("test-garbage-echo")
class Echo(BaseModel):
    text: str


def built(count: int) -> list[Task]:
    """``count`` tasks built in a row, as a program builds a batch to enqueue."""
    return [Task(items=[TaskItem(request=Echo(text=f"text {i}"))]) for i in range(count)]


@pytest.fixture
def any_pace(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every run of tasks built counts as a batch, however busy the machine; the next task
    built begins a run."""
    monkeypatch.setattr(garbage, "BATCH_WINDOW_S", 3600.0)
    monkeypatch.setattr(_PAUSES, "_built", 0)


@pytest.mark.usefixtures("any_pace")
def test_a_batch_of_tasks_built_in_a_row_is_walked_by_no_full_pass() -> None:
    """50,000 tasks are 600,000 tracked objects: as they grow, the collector's full passes
    would walk them again and again (seven passes, two thirds of the building)."""
    full: list[int] = []

    def on_pass(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            full.append(info["generation"])

    gc.collect()  # the budget is whole
    gc.callbacks.append(on_pass)
    try:
        tasks = built(50_000)
    finally:
        gc.callbacks.remove(on_pass)
    assert full == []
    assert generation_of(tasks[0]) == 2


@pytest.mark.usefixtures("any_pace")
def test_the_task_that_ends_a_run_moves_what_is_young() -> None:
    gc.collect()
    tasks = built(2 * garbage.BATCH_RUN)
    assert generation_of(tasks[-1]) == 2
    after = built(1)
    assert generation_of(after[0]) == 0


def test_tasks_built_now_and_then_are_left_to_the_collector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run of tasks that took longer than the window is not a batch being built."""
    ticks = iter(range(1_000_000))
    monkeypatch.setattr(garbage, "perf_counter", lambda: float(next(ticks)))  # a second each
    gc.collect()
    tasks = built(2 * garbage.BATCH_RUN)
    assert generation_of(tasks[-1]) == 0


@pytest.mark.usefixtures("any_pace")
def test_tasks_built_with_the_collector_off_or_objects_frozen_are_not_moved() -> None:
    gc.collect()
    gc.disable()
    tasks = built(2 * garbage.BATCH_RUN)
    gc.enable()
    assert generation_of(tasks[-1]) in (0, 1)  # walked by the young passes as usual
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        more = built(2 * garbage.BATCH_RUN)
        assert gc.get_freeze_count() == frozen
        assert generation_of(more[-1]) in (0, 1)
    finally:
        gc.unfreeze()


def test_a_program_holding_objects_frozen_has_them_counted_once_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Counting them walks them all: at every run of a batch it made building tasks, in a
    program that froze its start-up objects, three times as slow."""
    clock = [100.0]
    monkeypatch.setattr(garbage, "perf_counter", lambda: clock[0])  # every run is a batch
    monkeypatch.setattr(_PAUSES, "_built", 0)
    counts = 0
    count_frozen = gc.get_freeze_count

    def counting() -> int:
        nonlocal counts
        counts += 1
        return count_frozen()

    monkeypatch.setattr(gc, "get_freeze_count", counting)
    gc.collect()
    gc.freeze()
    try:
        frozen = count_frozen()
        tasks = built(20 * garbage.BATCH_RUN)
        assert counts == 1
        assert count_frozen() == frozen
        assert generation_of(tasks[-1]) in (0, 1)  # not moved
    finally:
        gc.unfreeze()
    more = built(2 * garbage.BATCH_RUN)
    assert generation_of(more[-1]) in (0, 1)  # still taken to be frozen
    clock[0] += garbage.FROZEN_RECHECK_S
    again = built(2 * garbage.BATCH_RUN)  # the first run, a second long, is no batch
    assert counts == 2
    assert generation_of(again[-1]) == 2  # counted again: none frozen, the batch is moved


@pytest.mark.usefixtures("any_pace")
def test_cycles_made_while_a_batch_is_built_are_collected_once_the_budget_is_spent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(garbage, "PROMOTE_BUDGET", 10 * garbage.BATCH_RUN * 12)
    gc.collect()
    passes = garbage._full_passes()
    first = built(2 * garbage.BATCH_RUN - 1)
    gc.collect(0)  # no young pass is due before the run's last task
    cycle = Node()
    cycle.other = cycle
    gone = weakref.ref(cycle)
    del cycle
    first += built(1)
    assert generation_of(first[-1]) == 2
    assert gone() is not None  # moved unwalked: it waits for a full pass
    assert garbage._full_passes() == passes
    built(20 * garbage.BATCH_RUN)  # past the budget
    assert garbage._full_passes() > passes
    assert gone() is None


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


def test_no_young_pass_walks_a_bulk_submission_after_it(tmp_path: Path) -> None:
    """The 20,000 tasks a submit_many returns (180,000 tracked objects) are not walked by
    the young pass that would otherwise start as soon as the collector is on again."""
    young: list[int] = []

    def on_pass(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            young.append(gc.get_count()[0])

    async def main() -> None:
        config = QueueConfig(database_url=str(tmp_path / "queue.db"))
        async with WorkerQueue(config) as queue:
            requests = [Echo(text=f"text {i}") for i in range(20_000)]
            gc.collect()
            gc.callbacks.append(on_pass)
            try:
                tasks = await queue.submit_many(requests)
                after = containers(5_000)  # allocations that start any pass due
            finally:
                gc.callbacks.remove(on_pass)
            assert len(tasks) == 20_000
            assert len(after) == 5_000
            assert generation_of(tasks[-1]) == 2

    asyncio.run(main())
    assert young  # the passes still run
    assert max(young) < garbage.PROMOTE_AT, young


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

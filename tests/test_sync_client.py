"""The synchronous client on both backends: from plain threads with no event loop, from a
thread whose own loop is running, from many threads at once; errors as the async API's."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

from tests.support import make_task
from tts import TextToSpeechRequest
from worker import (
    InvalidInputError,
    Jobs,
    ProcessorRegistry,
    QueueClosedError,
    QueueConfig,
    QueueFullError,
    SyncQueue,
    TaskNotFoundError,
    TaskState,
    WorkerQueue,
)

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")


def speech(text: str = "Hello") -> TextToSpeechRequest:
    return TextToSpeechRequest(text=text, voice_id="kokoro.af_heart")


def in_plain_thread(work: Callable[[], T]) -> T:
    """``work()`` in a new thread that has no event loop (the caller's may be running)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:  # pragma: no cover - the point of the helper
            outcome["error"] = AssertionError("the thread has a running loop")
            return
        try:
            outcome["value"] = work()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]


@pytest.fixture
def client(config: QueueConfig) -> Iterator[SyncQueue]:
    with SyncQueue(config) as sync:
        yield sync


def test_every_call_from_a_thread_without_a_loop(config: QueueConfig) -> None:
    def work() -> None:
        with SyncQueue(config) as sync:
            task = sync.submit(speech(), priority=3, queue="speech")
            assert sync.get_task(task.id).priority == 3
            many = sync.submit_many([speech("a"), speech("b")], queue="speech")
            plain = make_task("c")
            assert sync.enqueue([plain]) == 1
            assert plain.id
            listed = sync.list_tasks(queue="speech")
            assert [t.id for t in listed] == [task.id, *(t.id for t in many)]
            first = sync.list_tasks("pending", "speech", 1)  # in claim order: priority 3 first
            rest = sync.list_tasks("pending", "speech", 5, first[-1].id, after_priority=3)
            assert [t.id for t in [*first, *rest]] == [task.id, *(t.id for t in many)]
            assert sync.cancel(many[0].id, reason="not needed") is TaskState.CANCELLED
            stats = sync.stats()
            assert (stats["pending"], stats["cancelled"], stats["total"]) == (3, 1, 4)
            assert sync.stats("speech")["total"] == 3
            assert "next in queue" in sync.call(lambda q: q.why(task.id))

    in_plain_thread(work)


def test_from_a_thread_whose_own_loop_is_running(client: SyncQueue) -> None:
    async def inside_a_loop() -> str:
        # A blocking call from async code: it holds this loop up, but needs nothing of it.
        task = client.submit(speech())
        return client.get_task(task.id).id

    async def and_without_blocking() -> list[str]:
        made = await client.call_async(lambda q: q.submit_many([speech(), speech()]))
        return [t.id for t in made]

    def work() -> tuple[str, list[str]]:
        return asyncio.run(inside_a_loop()), asyncio.run(and_without_blocking())

    task_id, ids = in_plain_thread(work)
    assert client.get_task(task_id).state is TaskState.PENDING
    assert len(ids) == 2
    assert client.stats()["total"] == 3


def test_many_threads_share_one_client(client: SyncQueue) -> None:
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda n: client.submit(speech(str(n))).id, range(64)))
    assert len(set(ids)) == 64
    assert client.stats()["pending"] == 64


def test_errors_are_the_async_apis(config: QueueConfig) -> None:
    limited = config.model_copy(update={"max_pending": 1})
    with SyncQueue(limited) as sync:
        with pytest.raises(InvalidInputError, match="priority"):
            sync.submit(speech(), priority=10**9)
        with pytest.raises(TaskNotFoundError):
            sync.get_task("01J00000000000000000000000")
        sync.submit(speech())
        with pytest.raises(QueueFullError):
            sync.submit(speech())
    with pytest.raises(QueueClosedError):
        sync.stats()


def test_it_opens_on_first_use_and_closes_once(config: QueueConfig) -> None:
    sync = SyncQueue(config)
    assert sync.submit(speech()).state is TaskState.PENDING
    sync.close()
    sync.close()  # again: nothing to do
    with pytest.raises(QueueClosedError, match="closed"):
        sync.submit(speech())


def test_close_ends_the_calls_other_threads_have_in_flight(config: QueueConfig) -> None:
    sync = SyncQueue(config).open()
    running = threading.Event()

    async def long_call(queue: WorkerQueue) -> str:
        running.set()
        await asyncio.sleep(60)
        return "finished"

    async def short_call(queue: WorkerQueue) -> str:
        running.set()
        await asyncio.sleep(0.2)
        return "finished"

    with ThreadPoolExecutor(2) as pool:
        long = pool.submit(sync.call, long_call)
        assert running.wait(10)
        running.clear()
        short = pool.submit(sync.call, short_call)
        assert running.wait(10)
        sync.close(timeout=1.0)
        assert short.result(timeout=10) == "finished"  # within the grace: let it finish
        with pytest.raises(QueueClosedError, match="closed while the call ran"):
            long.result(timeout=10)  # past it: refused, not left hanging


def test_calls_racing_a_close_return_or_are_refused(config: QueueConfig) -> None:
    for _ in range(5):
        sync = SyncQueue(config).open()
        go = threading.Barrier(5)

        def submit_some(sync: SyncQueue = sync, go: threading.Barrier = go) -> list[str]:
            outcomes = []
            go.wait()
            for _ in range(20):
                try:
                    outcomes.append(sync.submit(speech()).id and "ok")
                except QueueClosedError:
                    outcomes.append("closed")
            return outcomes

        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(submit_some) for _ in range(4)]
            go.wait()
            sync.close()
            seen = {o for f in futures for o in f.result(timeout=30)}
        assert seen <= {"ok", "closed"}


def test_a_url_is_enough(tmp_path: Any) -> None:
    with SyncQueue(f"sqlite:///{tmp_path / 'q.db'}") as sync:
        assert sync.config.database_url.startswith("sqlite+aiosqlite:///")
        assert sync.submit(speech()).id


def test_its_own_loop_refuses_a_blocking_call(client: SyncQueue) -> None:
    async def blocking(queue: WorkerQueue) -> None:
        client.stats()

    with pytest.raises(RuntimeError, match="on its own loop"):
        client.call(blocking)


def test_a_missing_database_is_refused_when_it_opens(tmp_path: Any) -> None:
    from worker import DatabaseNotFoundError

    sync = SyncQueue(f"sqlite:///{tmp_path / 'none.db'}", create=False)
    with pytest.raises(DatabaseNotFoundError):
        sync.open()
    assert not (tmp_path / "none.db").exists()


# -- task functions through the client --------------------------------------------------------

registry = ProcessorRegistry()
jobs = Jobs(registry=registry)


@jobs.task(name="sync-client.double", queue="numbers")
def double(n: int) -> int:
    return 2 * n


def test_defer_sync_from_a_plain_thread_and_defer_from_any_loop(client: SyncQueue) -> None:
    jobs.bind(client)
    try:
        task = in_plain_thread(lambda: double.defer_sync(n=4))
        later = in_plain_thread(lambda: double.configure(delay=60).defer_sync(5))
        other = asyncio.run(double.defer(n=6))  # a loop that is not the client's
        many = asyncio.run(double.defer_many([{"n": 7}, {"n": 8}]))
        with pytest.raises(InvalidInputError, match=r"sync-client\.double\.n"):
            double.defer_sync(n="four")
    finally:
        jobs.bind(None)
    assert client.get_task(task.id).queue == "numbers"
    assert client.get_task(later.id).schedule_at > client.get_task(task.id).schedule_at
    assert client.get_task(other.id).items[0].request == double.model(n=6)
    assert len(many) == 2
    assert client.stats("numbers")["pending"] == 5

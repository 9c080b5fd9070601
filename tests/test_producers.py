"""Producers on both backends: ``submit`` and ``submit_many`` of registered requests, task
functions deferred and run by a real worker, the bound on pending tasks, and a retry's
priority step."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

from tests.runtime_worker import runtime_config
from tests.support import FakeClock, raw_sql
from tts import TextToSpeechRequest
from worker import (
    CallRequest,
    InvalidInputError,
    InvalidTaskError,
    Jobs,
    ProcessorRegistry,
    QueueClosedError,
    QueueConfig,
    QueueFullError,
    Resources,
    RetryPolicy,
    Task,
    TaskContext,
    TaskItem,
    TaskState,
    Worker,
    WorkerQueue,
    register_request_kind,
)
from worker.core.limits import MIN_PRIORITY
from worker.queue import producing
from worker.runtime.signatures import SignatureError

pytestmark = pytest.mark.timeout(60)


@register_request_kind("producers-email")
class EmailRequest(BaseModel):
    to: str
    subject: str = "hello"


class Unregistered(BaseModel):
    x: int = 0


def speech(text: str = "Hello") -> TextToSpeechRequest:
    return TextToSpeechRequest(text=text, voice_id="kokoro.af_heart")


# -- submit and submit_many ------------------------------------------------------------------


async def test_submit_returns_the_task_as_a_read_would(
    queue: WorkerQueue, clock: FakeClock
) -> None:
    policy = RetryPolicy(kind="fixed", delay_s=5)
    task = await queue.submit(
        speech(),
        queue="speech",
        priority=7,
        delay=30,
        max_attempts=4,
        retry_policy=policy,
        timeout_s=9,
        visibility_timeout=60,
        name="greeting",
        metadata={"user": 1},
        resources=Resources(memory_bytes=1024),
        response_url="https://example.com/done",
    )
    stored = await queue.get_task(task.id)
    assert task == stored
    assert stored.queue == "speech"
    assert stored.priority == 7
    assert stored.schedule_at == clock.now + 30
    assert stored.created_at == clock.now
    assert stored.max_attempts == 4
    assert stored.retry_policy == policy
    assert stored.items[0].request == speech()
    assert stored.items[0].response_url == "https://example.com/done"
    assert stored.state is TaskState.PENDING


async def test_submit_many_enqueues_each_request_with_the_options(queue: WorkerQueue) -> None:
    parent = await queue.submit(CallRequest(target="math:floor", args=[1.5]))
    requests = [EmailRequest(to=f"user{i}@example.com") for i in range(600)]
    tasks = await queue.submit_many(requests, queue="mail", depends_on=[parent], held=True)
    assert [t.items[0].request for t in tasks] == requests
    assert len({t.id for t in tasks}) == 600
    assert [t.id for t in tasks] == sorted(t.id for t in tasks)  # id order is enqueue order
    stored = await queue.list_tasks(queue="mail", limit=1000)
    assert stored == tasks
    assert all(t.depends_on == [parent.id] and t.held for t in stored)
    assert (await queue.get_queue_stats("mail"))["pending"] == 600


async def test_a_submission_of_many_slices_returns_each_task_as_stored(
    queue: WorkerQueue,
) -> None:
    # The tasks returned are built in slices while the rows are written (on SQLite in the
    # driver's thread, on PostgreSQL while the COPY waits): several slices' worth.
    count = 3 * producing._SLICE + 7
    requests = [EmailRequest(to=f"user{i}@example.com") for i in range(count)]
    tasks = await queue.submit_many(requests, queue="many", priority=2)
    assert [t.items[0].request for t in tasks] == requests
    assert len({t.id for t in tasks}) == count
    assert await queue.list_tasks(queue="many", limit=count + 1) == tasks


async def test_submit_many_of_mixed_kinds_and_of_nothing(queue: WorkerQueue) -> None:
    tasks = await queue.submit_many([speech(), EmailRequest(to="a@example.com"), speech("b")])
    assert [type(t.items[0].request) for t in tasks] == [
        TextToSpeechRequest,
        EmailRequest,
        TextToSpeechRequest,
    ]
    assert await queue.submit_many([]) == []
    assert (await queue.get_queue_stats())["total"] == 3


async def test_bad_options_are_refused_naming_them(queue: WorkerQueue) -> None:
    refusals: list[tuple[dict[str, Any], str]] = [
        ({"priority": 10**7}, "priority: Input should be less than or equal to 1000000"),
        ({"queue": "no spaces"}, "queue: String should match pattern"),
        ({"delay": -1}, "delay must be a finite number of seconds >= 0"),
        ({"delay": 1, "schedule_at": 5.0}, "give delay or schedule_at, not both"),
        ({"prority": 1}, "unknown option prority"),
        ({"depends_on": ["nope"]}, "depends_on"),
        ({"response_url": "ftp://x"}, "response_url"),
        ({"max_attempts": 0}, "max_attempts"),
    ]
    for options, message in refusals:
        with pytest.raises(InvalidInputError, match=message):
            await queue.submit(speech(), **options)
    with pytest.raises(InvalidInputError, match="idempotency_key"):
        await queue.submit_many([speech(), speech()], idempotency_key="one")
    assert (await queue.get_queue_stats())["total"] == 0


async def test_one_bad_request_refuses_the_whole_batch(queue: WorkerQueue) -> None:
    with pytest.raises(InvalidTaskError, match=r"requests\[2\].*not a registered request kind"):
        await queue.submit_many([speech(), speech(), Unregistered(), speech()])
    with pytest.raises(InvalidTaskError, match=r"requests\[1\] must be an instance"):
        await queue.submit_many([speech(), {"text": "hi"}])  # type: ignore[list-item]
    with pytest.raises(InvalidInputError, match="submit_many takes a list"):
        await queue.submit([speech()])  # type: ignore[arg-type]
    with pytest.raises(InvalidTaskError, match=r"requests\[0\] cannot be stored"):
        await queue.submit(EmailRequest(to="\udcff"))
    assert (await queue.get_queue_stats())["total"] == 0


async def test_submit_with_a_held_key_returns_the_live_task(queue: WorkerQueue) -> None:
    first = await queue.submit(speech(), idempotency_key="greet:ada")
    claimed = await queue.dequeue(1)
    again = await queue.submit(speech("other"), idempotency_key="greet:ada")
    assert again.id == first.id == claimed[0].id
    assert again.state is TaskState.PROCESSING  # as it is now, not as it was built
    assert (await queue.get_queue_stats())["total"] == 1


# -- the SQLite bulk insert: rows that vary in any column ---------------------------------------


async def test_a_batch_varying_in_every_column_is_stored_as_given(queue: WorkerQueue) -> None:
    policy = RetryPolicy(kind="delays", delays_s=[1, 2])
    variants: list[dict[str, Any]] = [
        {},
        {"queue": "other", "priority": -3, "name": "n", "metadata": {"k": [1, 2]}},
        {"max_attempts": 2, "visibility_timeout": 9.5, "timeout_s": 3, "retry_policy": policy},
        {"held": True, "idempotency_key": "k1", "resources": Resources(cpu=0.5, gpu=True)},
        {"schedule_at": 2_000_000_000.0, "priority": 0},
    ]
    tasks = [
        Task(items=[TaskItem(request=speech(str(i)))], **variants[i % len(variants)])
        for i in range(1203)  # past several statements' worth of rows
    ]
    tasks[3].idempotency_key = None  # keys are unique among live tasks
    for index in range(8, len(tasks), 5):
        tasks[index].idempotency_key = f"k{index}"
    assert await queue.enqueue(tasks) == len(tasks)
    stored = {t.id: t for t in await queue.list_tasks(limit=2000)}
    for task in tasks:
        assert stored[task.id] == task


# -- the bound on pending tasks --------------------------------------------------------------


@pytest.fixture
async def bounded(config: QueueConfig, clock: FakeClock) -> AsyncIterator[WorkerQueue]:
    limited = config.model_copy(update={"max_pending": 5})
    async with WorkerQueue(limited, clock=clock) as q:
        yield q


async def test_an_enqueue_past_the_bound_is_refused_whole(bounded: WorkerQueue) -> None:
    await bounded.submit_many([speech() for _ in range(3)])
    with pytest.raises(QueueFullError) as refused:
        await bounded.submit_many([speech() for _ in range(3)])
    assert refused.value.queue == "default"
    assert (refused.value.pending, refused.value.adding, refused.value.limit) == (3, 3, 5)
    assert "QUEUE_MAX_PENDING" in str(refused.value)
    with pytest.raises(QueueFullError):
        await bounded.enqueue([Task(items=[TaskItem(request=speech())]) for _ in range(3)])
    assert (await bounded.get_queue_stats())["total"] == 3  # nothing of either batch
    await bounded.submit_many([speech(), speech()])  # exactly to the bound
    with pytest.raises(QueueFullError):
        await bounded.submit(speech())


async def test_the_bound_is_per_queue_and_counts_pending_tasks_only(
    bounded: WorkerQueue,
) -> None:
    await bounded.submit_many([speech() for _ in range(5)])
    await bounded.submit_many([speech() for _ in range(5)], queue="other")
    mixed = [Task(items=[TaskItem(request=speech())], queue="third") for _ in range(4)]
    mixed.append(Task(items=[TaskItem(request=speech())], queue="other"))
    with pytest.raises(QueueFullError, match="'other'"):
        await bounded.enqueue(mixed)  # one queue over refuses the batch for all
    assert (await bounded.get_queue_stats("third"))["total"] == 0
    claimed = await bounded.dequeue(2, queues=["default"])  # running ones leave room
    await bounded.submit_many([speech(), speech()])
    assert len(claimed) == 2
    assert (await bounded.get_queue_stats("default"))["pending"] == 5


async def test_a_reused_key_takes_no_room(bounded: WorkerQueue) -> None:
    first = await bounded.submit(speech(), idempotency_key="once")
    await bounded.submit_many([speech() for _ in range(4)])
    again = await bounded.submit(speech(), idempotency_key="once")  # inserts nothing
    assert again.id == first.id


@pytest.mark.postgres
async def test_producers_racing_on_postgresql_never_overshoot(postgres_url: str) -> None:
    config = QueueConfig(database_url=postgres_url, max_pending=40)
    queues = [WorkerQueue(config) for _ in range(6)]
    for q in queues:
        await q.initialize()
    try:

        async def produce(q: WorkerQueue) -> int:
            added = 0
            for _ in range(8):
                with contextlib.suppress(QueueFullError):
                    added += len(await q.submit_many([speech() for _ in range(3)]))
            return added

        added = await asyncio.gather(*(produce(q) for q in queues))
        pending = (await queues[0].get_queue_stats())["pending"]
        assert pending == sum(added)
        assert 38 <= pending <= 40  # filled up to the bound, never past it
    finally:
        for q in queues:
            await q.close()


# -- a retry's priority step -----------------------------------------------------------------


async def test_each_retry_moves_the_priority_by_the_step(
    queue: WorkerQueue, clock: FakeClock
) -> None:
    policy = RetryPolicy(kind="fixed", delay_s=0, priority_step=-2)
    task = await queue.submit(speech(), priority=3, retry_policy=policy, max_attempts=5)
    plain = await queue.submit(speech(), priority=3, max_attempts=5)
    for expected in (1, -1, -3):
        for claimed in await queue.dequeue(10):
            await queue.mark_as_retry(claimed.id, "boom", lease_id=claimed.lease_id)
        clock.advance(1)
        await queue.retry()
        assert (await queue.get_task(task.id)).priority == expected
        assert (await queue.get_task(plain.id)).priority == 3


async def test_the_priority_stops_at_the_end_of_its_range(
    queue: WorkerQueue, clock: FakeClock
) -> None:
    policy = RetryPolicy(kind="fixed", delay_s=0, priority_step=-10)
    task = await queue.submit(speech(), priority=MIN_PRIORITY + 4, retry_policy=policy)
    for _ in range(2):
        (claimed,) = await queue.dequeue(1)
        await queue.mark_as_retry(claimed.id, "boom", lease_id=claimed.lease_id)
        clock.advance(1)
        await queue.retry()
        assert (await queue.get_task(task.id)).priority == MIN_PRIORITY


def test_a_step_beyond_the_range_is_refused() -> None:
    with pytest.raises(ValueError, match="priority_step"):
        RetryPolicy(priority_step=3_000_000)


# -- task functions --------------------------------------------------------------------------

registry = ProcessorRegistry()
jobs = Jobs(registry=registry)
#: Task functions bound to nothing: deferred from inside a running task, they use its queue.
inner = Jobs(registry=registry)
MAIN_THREAD = threading.main_thread()


class Greeting(BaseModel):
    text: str
    at: datetime.datetime


@jobs.task(name="producers.greet", queue="greetings", priority=4)
async def greet(name: str, times: int = 1, *, ctx: TaskContext) -> dict[str, Any]:
    return {"text": " ".join([f"hello {name}"] * times), "attempt": ctx.task.attempt_count,
            "task": ctx.task.id}  # fmt: skip


@jobs.task(name="producers.add", retry=RetryPolicy(kind="fixed", delay_s=0))
def add(a: int, b: int = 10) -> dict[str, Any]:
    return {"sum": a + b, "in_a_thread": threading.current_thread() is not MAIN_THREAD}


@jobs.task(name="producers.stamp")
def stamp(text: str, at: datetime.datetime) -> Greeting:
    return Greeting(text=text, at=at)


@inner.task(name="producers.child")
async def child(n: int = Field(ge=0)) -> int:
    return n * 2


@jobs.task(name="producers.spawn")
async def spawn(n: int) -> list[str]:
    made = await child.defer_many([{"n": i} for i in range(n)])
    return [t.id for t in made]


@jobs.task(name="producers.spawn_sync")
def spawn_sync(n: int) -> str:
    return child.defer_sync(n=n).id


@pytest.fixture
async def bound(database_url: str) -> AsyncIterator[WorkerQueue]:
    async with WorkerQueue(runtime_config(database_url)) as queue:
        jobs.bind(queue)
        try:
            yield queue
        finally:
            jobs.bind(None)


async def run_dry(queue: WorkerQueue) -> dict[str, int]:
    worker = Worker(queue, registry, burst=True, handle_signals=False)
    async with asyncio.timeout(30):
        return await worker.run()


async def test_a_decorated_async_and_sync_function_run_in_a_worker(bound: WorkerQueue) -> None:
    first = await greet.defer("ada", times=2)
    second = await add.defer(a=1)
    third = await add.configure(priority=9, queue="sums").defer(2, b=3)
    assert (first.queue, first.priority) == ("greetings", 4)
    assert (third.queue, third.priority) == ("sums", 9)
    assert third.retry_policy == RetryPolicy(kind="fixed", delay_s=0)  # the decorator's
    counts = await run_dry(bound)
    assert counts["completed"] == 3
    done = [await bound.get_task(t.id) for t in (first, second, third)]
    assert all(t.state is TaskState.COMPLETED for t in done)
    assert done[0].items[0].result == {"text": "hello ada hello ada", "attempt": 1,
                                       "task": first.id}  # fmt: skip
    assert done[1].items[0].result == {"sum": 11, "in_a_thread": True}
    assert done[2].items[0].result == {"sum": 5, "in_a_thread": True}


async def test_bad_arguments_are_refused_at_defer(bound: WorkerQueue) -> None:
    with pytest.raises(InvalidInputError, match=r"producers\.add\.a: Input should be a valid"):
        await add.defer(a="one")
    with pytest.raises(InvalidInputError, match=r"producers\.add\.a: Field required"):
        await add.defer(b=1)
    with pytest.raises(InvalidInputError, match=r"producers\.add\.c: Extra inputs"):
        await add.defer(a=1, c=2)
    with pytest.raises(InvalidInputError, match="takes 2 arguments, got 3 positional"):
        await add.defer(1, 2, 3)
    with pytest.raises(InvalidInputError, match="a given twice"):
        await add.defer(1, a=2)
    inner.bind(bound)
    try:
        with pytest.raises(InvalidInputError, match=r"producers\.child calls\[1\]\.n: Input"):
            await child.configure().defer_many([{"n": 1}, {"n": -1}])
    finally:
        inner.bind(None)
    with pytest.raises(InvalidInputError, match="unknown option"):
        add.configure(when=5)  # type: ignore[call-arg]
    assert (await bound.get_queue_stats())["total"] == 0


async def test_defer_many_enqueues_every_call_atomically(bound: WorkerQueue) -> None:
    tasks = await add.defer_many([{"a": i} for i in range(250)])
    assert len(tasks) == 250
    with pytest.raises(InvalidInputError, match=r"calls\[3\]\.a"):
        await add.defer_many([{"a": 1}, {"a": 2}, {"a": 3}, {"a": "x"}])
    assert (await bound.get_queue_stats())["total"] == 250
    assert (await run_dry(bound))["completed"] == 250
    results = [t.items[0].result for t in await bound.list_tasks(limit=300)]
    sums = [r["sum"] for r in results if isinstance(r, dict) and isinstance(r["sum"], int)]
    assert sorted(sums) == [i + 10 for i in range(250)]


@jobs.task(name="producers.returns")
def returns(what: str) -> Any:
    if what == "bytes":
        return b"\xff\xfe not UTF-8"
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    return cycle


async def test_a_result_with_no_json_form_discards_the_task_saying_so(bound: WorkerQueue) -> None:
    tasks = [await returns.defer(what="bytes"), await returns.defer(what="cycle")]
    await run_dry(bound)
    ended = [await bound.get_task(t.id) for t in tasks]
    assert [t.state for t in ended] == [TaskState.DISCARDED, TaskState.DISCARDED]
    assert [t.attempt_count for t in ended] == [1, 1]  # not retried: it would fail again
    assert "returned a value with no JSON form: 'utf-8' codec" in str(ended[0].last_error)
    assert "no JSON form: Circular reference" in str(ended[1].last_error)


async def test_results_with_a_json_form_are_stored_as_it(bound: WorkerQueue) -> None:
    at = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    task = await stamp.defer(text="hi", at=at.isoformat())
    await run_dry(bound)
    done = await bound.get_task(task.id)
    assert done.items[0].result == {"text": "hi", "at": "2030-01-02T03:04:05Z"}


async def test_a_running_task_defers_to_its_own_queue(bound: WorkerQueue) -> None:
    parent = await spawn.defer(n=3)
    threaded = await spawn_sync.defer(n=7)
    await run_dry(bound)  # runs the parents, then the children they enqueued
    ids = (await bound.get_task(parent.id)).items[0].result
    assert isinstance(ids, list)
    assert len(ids) == 3
    children = [await bound.get_task(str(i)) for i in ids]
    assert [c.items[0].result for c in children] == [0, 2, 4]
    from_thread = (await bound.get_task(threaded.id)).items[0].result
    assert (await bound.get_task(str(from_thread))).items[0].result == 14


async def test_the_function_stays_callable_and_keeps_its_name() -> None:
    assert add(1, 2) == {"sum": 3, "in_a_thread": False}
    assert await child(4) == 8
    assert add.__name__ == "add"  # type: ignore[attr-defined]
    assert add.name == "producers.add"
    assert jobs.functions["producers.greet"] is greet
    assert "producers.add" in registry


async def test_defer_without_a_queue_says_how_to_bind_one() -> None:
    with pytest.raises(QueueClosedError, match=r"jobs\.bind\(queue\)"):
        await child.defer(n=1)
    async with WorkerQueue(QueueConfig(database_url="sqlite+aiosqlite:///:memory:")) as q:
        inner.bind(q)
        try:
            with pytest.raises(QueueClosedError, match="defer_sync needs a SyncQueue"):
                child.defer_sync(n=1)
        finally:
            inner.bind(None)


def signature_refused(function: Callable[..., Any], message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        Jobs(registry=ProcessorRegistry()).task(name="producers.refused")(function)


def test_signatures_the_queue_cannot_store_are_refused_at_decoration() -> None:
    def star(*values: int) -> None: ...

    def stars(**values: int) -> None: ...

    def positional(a: int, /) -> None: ...

    def callable_arg(f: Callable[[int], int]) -> None: ...

    def bad_default(n: int = "x") -> None:  # type: ignore[assignment]
        ...

    def private(_n: int) -> None: ...

    signature_refused(star, r"\*values cannot be stored")
    signature_refused(stars, r"\*\*values cannot be stored")
    signature_refused(positional, "positional-only")
    signature_refused(callable_arg, "cannot be stored as JSON")
    signature_refused(bad_default, "its default 'x' cannot be stored")
    signature_refused(private, "cannot start with '_'")
    for taken in ("model_config", "model_dump", "model_fields", "json", "copy"):
        namespace: dict[str, Any] = {}
        exec(f"def uses_it({taken}: int) -> None: ...", namespace)
        signature_refused(namespace["uses_it"], rf"'{taken}': the name is taken by the request")

    def fine(model_name: str, fields: int = 0) -> None: ...  # model_ names pydantic leaves free

    Jobs(registry=ProcessorRegistry()).task(name="producers.model_names")(fine)


def test_a_nested_function_needs_a_name() -> None:
    def nested(n: int) -> None: ...

    with pytest.raises(SignatureError, match="define it at module level, or give name="):
        Jobs(registry=ProcessorRegistry()).task(nested)


def test_bad_decorator_options_are_refused_at_decoration() -> None:
    def fine(n: int) -> None: ...

    with pytest.raises(InvalidInputError, match="priority"):
        Jobs(registry=ProcessorRegistry()).task(name="producers.opts", priority=10**8)(fine)


def test_a_kind_name_taken_by_another_function_is_refused() -> None:
    def other(n: int) -> None: ...

    with pytest.raises(ValueError, match="already registered"):
        Jobs(registry=ProcessorRegistry()).task(name="producers.add")(other)


def test_the_default_name_is_the_module_and_function() -> None:
    from worker.runtime.signatures import qualified_name

    assert qualified_name(run_dry) == "tests.test_producers.run_dry"


# -- the command line --------------------------------------------------------------------------


async def test_wq_submit_to_a_full_queue_exits_5(tmp_path: Path) -> None:
    from tests.test_cli import wq

    db = tmp_path / "full.db"
    full = {"QUEUE_MAX_PENDING": "1"}
    assert wq(db, "submit", "call", "math:floor", env=full).code == 0
    result = wq(db, "submit", "call", "math:floor", env=full)
    assert result.code == 5, result.err
    assert "queue 'default' is full" in result.err
    assert "try again once workers have caught up" in result.err
    assert "Traceback" not in result.err
    rows = await raw_sql(f"sqlite+aiosqlite:///{db}", "SELECT count(*) FROM tasks")
    assert rows == [(1,)]

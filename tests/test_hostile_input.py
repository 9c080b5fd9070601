"""Hostile input through the public API: lone surrogates, deep JSON, unbounded numbers, wrong
types. Each is refused naming the field, with nothing written, or (error texts) made safe;
none stops the sweep or a read afterwards."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pydantic import JsonValue

from tests.runtime_worker import JobRequest, job_task, runtime_config
from tests.support import make_task
from worker import (
    Completion,
    Failure,
    InvalidInputError,
    InvalidTaskError,
    ProcessorRegistry,
    Task,
    TaskContext,
    TaskItem,
    TaskState,
    Worker,
    WorkerQueue,
)
from worker.builtins import CallRequest
from worker.core.storable import MAX_JSON_DEPTH, json_depth

BAD = "file-\udcff.wav"  # what os.fsdecode gives for the byte 0xff


def nested(depth: int) -> JsonValue:
    """A list ``depth`` levels deep: ``[[...[]...]]``."""
    value: JsonValue = []
    for _ in range(depth - 1):
        value = [value]
    return value


async def claim_one(queue: WorkerQueue, **fields: Any) -> Task:
    await queue.enqueue([make_task(**fields)])
    [task] = await queue.dequeue(1)
    return task


async def still_works(queue: WorkerQueue) -> None:
    """The paths one bad row used to stop: the sweep, a claim, reads, statistics."""
    await queue.retry()
    await queue.dequeue(10)
    for task in await queue.list_tasks(limit=1000):
        await queue.get_task(task.id)
    await queue.get_statistics()


# -- error texts are made safe -------------------------------------------------------------


@pytest.mark.parametrize("how", ["retry", "discard", "retry_many", "discard_many", "cancel"])
async def test_a_lone_surrogate_in_an_error_is_kept_escaped(queue: WorkerQueue, how: str) -> None:
    task = await claim_one(queue)
    error, lease = f"cannot open {BAD}", task.lease_id
    if how == "retry":
        await queue.mark_as_retry(task.id, error, lease_id=lease)
    elif how == "discard":
        await queue.mark_as_discarded(task.id, error, lease_id=lease)
    elif how == "retry_many":
        assert await queue.retry_many([Failure(task.id, error, lease)]) == []
    elif how == "discard_many":
        assert await queue.discard_many([Failure(task.id, error, lease)]) == []
    else:
        await queue.mark_as_cancelled(task.id, lease_id=lease, reason=error)
    stored = await queue.get_task(task.id)
    assert stored.last_error == "cannot open file-\\udcff.wav"
    if how != "cancel":
        assert stored.errors[-1].error == "cannot open file-\\udcff.wav"
    swept = await queue.retry()
    assert [t.id for t in swept] == ([task.id] if how in ("retry", "retry_many") else [])
    assert [t.id for t in await queue.list_tasks()] == [task.id]
    await still_works(queue)


@pytest.mark.parametrize("how", ["retry", "discard", "retry_many", "cancel"])
async def test_a_nul_in_an_error_is_kept_escaped_not_cut_short(
    queue: WorkerQueue, how: str
) -> None:
    """Error texts travel through SQLite's JSON functions, which end a text at a NUL: before,
    "x\\x00y" was stored as "x"."""
    task = await claim_one(queue)
    error, lease = "bad byte: x\x00y, then more", task.lease_id
    if how == "retry":
        await queue.mark_as_retry(task.id, error, lease_id=lease)
    elif how == "discard":
        await queue.mark_as_discarded(task.id, error, lease_id=lease)
    elif how == "retry_many":
        assert await queue.retry_many([Failure(task.id, error, lease)]) == []
    else:
        await queue.mark_as_cancelled(task.id, lease_id=lease, reason=error)
    stored = await queue.get_task(task.id)
    assert stored.last_error == "bad byte: x\\x00y, then more"
    if how != "cancel":
        assert stored.errors[-1].error == "bad byte: x\\x00y, then more"


async def test_an_exception_message_with_a_lone_surrogate_ends_in_a_readable_retry(
    database_url: str,
) -> None:
    async def fails(item: TaskItem, ctx: TaskContext) -> JsonValue:
        raise OSError(f"cannot open {BAD}")

    registry = ProcessorRegistry()
    registry.add("job", fails)
    async with WorkerQueue(runtime_config(database_url, default_max_attempts=2)) as queue:
        await queue.enqueue([job_task()])
        async with asyncio.timeout(30):
            await Worker(queue, registry, burst=True, handle_signals=False).run()
        [task] = await queue.list_tasks()
        assert task.state is TaskState.DISCARDED  # both attempts ran: the sweep went on
        assert [e.error for e in task.errors] == ["OSError: cannot open file-\\udcff.wav"] * 2


# -- results -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "problem"),
    [
        (BAD, r"results\[1\] holds the byte \\xff"),
        ({"path": BAD}, r"results\[1\] holds the byte \\xff"),
        ({BAD: 1}, r"results\[1\] holds the byte \\xff"),
        (nested(MAX_JSON_DEPTH + 1), r"results\[1\] is nested deeper than 100 levels"),
        (nested(990), r"results\[1\] is nested deeper than 100 levels"),
        (nested(5000), r"results\[1\] is nested deeper than 100 levels"),
        (math.inf, r"results\[1\] is not JSON"),
    ],
    ids=["text", "value", "key", "101", "990", "5000", "inf"],
)
async def test_results_the_database_cannot_hold_are_refused_naming_them(
    queue: WorkerQueue, result: Any, problem: str
) -> None:
    task = await claim_one(queue)
    with pytest.raises(InvalidInputError, match=rf"task {task.id}: {problem}"):
        await queue.mark_as_complete(task.id, lease_id=task.lease_id, results=["ok", result])
    stored = await queue.get_task(task.id)
    assert stored.state is TaskState.PROCESSING  # nothing written
    assert stored.items[0].result is None
    await still_works(queue)


async def test_results_as_deep_as_the_limit_are_kept_and_no_deeper(queue: WorkerQueue) -> None:
    task = await claim_one(queue)
    with pytest.raises(InvalidInputError, match="nested deeper than 100 levels"):
        await queue.mark_as_complete(
            task.id, lease_id=task.lease_id, results=[nested(MAX_JSON_DEPTH + 1)]
        )
    deep = nested(MAX_JSON_DEPTH)
    await queue.mark_as_complete(task.id, lease_id=task.lease_id, results=[deep])
    assert (await queue.get_task(task.id)).items[0].result == deep


@pytest.mark.parametrize("result", [BAD, nested(MAX_JSON_DEPTH + 1)], ids=["text", "deep"])
async def test_a_handler_result_the_database_cannot_hold_discards_that_task_alone(
    database_url: str, result: JsonValue
) -> None:
    async def odd(item: TaskItem, ctx: TaskContext) -> JsonValue:
        return result if item.request.name == "odd" else "fine"  # type: ignore[attr-defined]

    registry = ProcessorRegistry()
    registry.add("job", odd)
    async with WorkerQueue(runtime_config(database_url)) as queue:
        bad, good = job_task(name="odd"), job_task()
        await queue.enqueue([bad, good])
        async with asyncio.timeout(30):
            await Worker(queue, registry, burst=True, handle_signals=False).run()
        refused = await queue.get_task(bad.id)
        assert refused.state is TaskState.DISCARDED
        assert "item 0's result" in (refused.last_error or "")
        assert (await queue.get_task(good.id)).items[0].result == "fine"


# -- enqueue -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"metadata": {"path": BAD}}, r"tasks\[3\]\.metadata holds the byte \\xff"),
        ({"metadata": {BAD: 1}}, r"tasks\[3\]\.metadata holds the byte \\xff"),
        ({"metadata": {"d": nested(150)}}, r"tasks\[3\]\.metadata is nested deeper than 100"),
        ({"metadata": {"d": nested(990)}}, r"tasks\[3\]\.metadata\.d.*nested too deeply"),
        ({"metadata": {"x": math.nan}}, r"tasks\[3\]\.metadata is not JSON"),
        ({"visibility_timeout": math.inf}, r"tasks\[3\]\.visibility_timeout: .*finite"),
        ({"timeout_s": math.inf}, r"tasks\[3\]\.timeout_s: .*finite"),
        ({"timeout_s": 400 * 86400.0}, r"tasks\[3\]\.timeout_s: .*less than or equal"),
        ({"schedule_at": math.inf}, r"tasks\[3\]\.schedule_at: .*finite"),
        ({"max_attempts": 2**70}, r"tasks\[3\]\.max_attempts"),
        ({"retry_policy": {"kind": "fixed", "delay_s": math.inf}}, r"retry_policy\.delay_s"),
        ({"retry_policy": {"kind": "delays", "delays_s": [1, math.inf]}}, r"delays_s\[1\]"),
        ({"retry_policy": {"multiplier": 1e300}}, r"retry_policy\.multiplier"),
        ({"resources": {"memory_bytes": 2**70}}, r"resources\.memory_bytes"),
        ({"resources": {"cpu": math.inf}}, r"resources\.cpu"),
        ({"items": [{"request": JobRequest(name=BAD)}]}, r"tasks\[3\]\.items\[0\]\.request"),
        (
            {"items": [{"request": CallRequest(target="m:f", args=[nested(150)])}]},
            r"tasks\[3\]\.items\[0\]\.request is nested deeper than 100",
        ),
    ],
)
async def test_a_task_the_database_cannot_hold_is_refused_naming_its_field(
    queue: WorkerQueue, fields: dict[str, Any], problem: str
) -> None:
    good = make_task().model_dump(exclude={"items"})
    good["items"] = [TaskItem(request=JobRequest())]
    bad = {**good, **fields}
    with pytest.raises(InvalidTaskError, match=problem) as refused:
        await queue.enqueue([good, good, good, bad, good])
    assert len(str(refused.value)) < 1000  # a deep location is cut short
    assert (await queue.get_queue_stats())["total"] == 0  # nothing written
    await still_works(queue)


async def test_json_as_deep_as_the_limit_is_kept_and_no_deeper(queue: WorkerQueue) -> None:
    for too_deep in (
        Task(items=[TaskItem(request=CallRequest(target="m:f", args=nested(MAX_JSON_DEPTH)))]),
        make_task(metadata={"d": nested(MAX_JSON_DEPTH)}),
    ):
        with pytest.raises(InvalidTaskError, match="nested deeper than 100 levels"):
            await queue.enqueue([too_deep])
    task = Task(
        items=[TaskItem(request=CallRequest(target="m:f", args=nested(MAX_JSON_DEPTH - 1)))],
        metadata={"d": nested(MAX_JSON_DEPTH - 1)},
    )
    await queue.enqueue([task])
    stored = await queue.get_task(task.id)
    assert stored.metadata == {"d": nested(MAX_JSON_DEPTH - 1)}
    assert json_depth(stored.items[0].request.model_dump_json()) == MAX_JSON_DEPTH


# -- progress and checkpoints --------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"current": math.nan}, r"progress\.current: .*finite"),
        ({"current": 1, "total": math.inf}, r"progress\.total: .*finite"),
        ({"current": 1, "message": BAD}, r"progress\.message"),
        ({"current": 1, "message": "x" * 2001}, r"progress\.message: .*at most 2000"),
    ],
)
async def test_progress_the_database_cannot_hold_is_refused(
    queue: WorkerQueue, values: dict[str, Any], problem: str
) -> None:
    task = await claim_one(queue)
    assert task.lease_id is not None
    with pytest.raises(InvalidInputError, match=problem):
        await queue.set_progress(task.id, task.lease_id, **values)
    assert (await queue.get_task(task.id)).progress is None


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"path": BAD}, r"data holds the byte \\xff"),
        (nested(MAX_JSON_DEPTH + 3), "data is nested deeper than 100 levels"),
        (nested(5000), "data is nested deeper than 100 levels"),
        ([math.nan], "data is not JSON"),
        (2**70, "beyond 64-bit integers"),
    ],
)
async def test_a_checkpoint_the_database_cannot_hold_is_refused(
    queue: WorkerQueue, data: JsonValue, problem: str
) -> None:
    task = await claim_one(queue)
    assert task.lease_id is not None
    with pytest.raises(InvalidInputError, match=problem):
        await queue.save_checkpoint(task.id, task.lease_id, data)
    assert (await queue.get_task(task.id)).checkpoint is None


@pytest.mark.parametrize("data", [-23, 0, 2**63 - 1, 0.1, 1e300, True, None, "12", "text"])
async def test_a_checkpoint_that_is_a_bare_value_reads_back_as_saved(
    queue: WorkerQueue, data: JsonValue
) -> None:
    """JSON columns have NUMERIC affinity: a bare number is stored as a number (reading it
    back as JSON text failed and dropped the checkpoint)."""
    task = await claim_one(queue)
    assert task.lease_id is not None
    await queue.save_checkpoint(task.id, task.lease_id, data)
    assert (await queue.get_task(task.id)).checkpoint == data
    await still_works(queue)


async def test_a_handler_gets_a_clear_error_for_bad_progress_and_checkpoints(
    database_url: str,
) -> None:
    seen: list[str] = []

    async def handler(item: TaskItem, ctx: TaskContext) -> JsonValue:
        calls: list[Callable[[], Awaitable[None]]] = [
            lambda: ctx.progress(1, message=BAD),
            lambda: ctx.progress(math.nan),
            lambda: ctx.checkpoint({"path": BAD}),
            lambda: ctx.checkpoint(nested(MAX_JSON_DEPTH + 1)),
        ]
        for call in calls:
            with pytest.raises(InvalidInputError) as refused:
                await call()
            seen.append(str(refused.value))
        return "done"

    registry = ProcessorRegistry()
    registry.add("job", handler)
    async with WorkerQueue(runtime_config(database_url)) as queue:
        task = job_task()
        await queue.enqueue([task])
        async with asyncio.timeout(30):
            await Worker(queue, registry, burst=True, handle_signals=False).run()
        done = await queue.get_task(task.id)
        assert done.state is TaskState.COMPLETED, done.last_error
        assert done.progress is None
    assert "progress.message" in seen[0]
    assert "progress.current" in seen[1]
    assert "checkpoint data holds the byte \\xff" in seen[2]
    assert "checkpoint data is nested deeper" in seen[3]


# -- scalar arguments ----------------------------------------------------------------------


def refused_calls(queue: WorkerQueue, task: Task) -> list[tuple[str, Any]]:
    lease = task.lease_id or ""
    return [
        ("size", lambda: queue.dequeue(size="5")),  # type: ignore[arg-type]
        ("size", lambda: queue.dequeue(size=True)),
        ("size", lambda: queue.dequeue(size=0)),
        ("size", lambda: queue.dequeue(size=10**12)),
        ("queues", lambda: queue.dequeue(queues="default")),
        ("queues\\[0\\]", lambda: queue.dequeue(queues=[5])),  # type: ignore[list-item]
        ("resources", lambda: queue.dequeue(resources={"cpu": 1})),  # type: ignore[arg-type]
        ("queues", lambda: queue.any_due(queues="default")),
        ("task_id", lambda: queue.get_task(5)),  # type: ignore[arg-type]
        ("task_id", lambda: queue.get_task(BAD)),
        ("task_id", lambda: queue.mark_as_complete(None)),  # type: ignore[arg-type]
        ("lease_id", lambda: queue.mark_as_complete(task.id, lease_id=7)),  # type: ignore[arg-type]
        ("results", lambda: queue.mark_as_complete(task.id, results="ok")),  # type: ignore[arg-type]
        ("error", lambda: queue.mark_as_retry(task.id, 42)),  # type: ignore[arg-type]
        ("delay_s", lambda: queue.mark_as_retry(task.id, "e", delay_s=math.inf)),
        ("delay_s", lambda: queue.mark_as_retry(task.id, "e", delay_s="1")),  # type: ignore[arg-type]
        ("delay_s", lambda: queue.retry_many([Failure(task.id, "e", lease, math.nan)])),
        ("reason", lambda: queue.mark_as_cancelled(task.id, reason=3)),  # type: ignore[arg-type]
        ("task_id", lambda: queue.mark_as_resume(BAD)),
        ("seconds", lambda: queue.extend_lease(task.id, lease, math.inf)),
        ("seconds", lambda: queue.extend_lease(task.id, lease, -1)),
        ("seconds", lambda: queue.heartbeat([(task.id, lease)], math.nan)),
        ("leases", lambda: queue.heartbeat("abc")),  # type: ignore[arg-type]
        ("leases\\[0\\]", lambda: queue.release([(task.id,)])),  # type: ignore[list-item]
        ("lease_id", lambda: queue.set_progress(task.id, None, 1)),  # type: ignore[arg-type]
        ("size", lambda: queue.retry(size="10")),  # type: ignore[arg-type]
        ("visibility_timeout", lambda: queue.retry(visibility_timeout=math.inf)),
        ("max_attempts", lambda: queue.retry(max_attempts=2.5)),  # type: ignore[arg-type]
        ("limit", lambda: queue.list_tasks(limit="100")),  # type: ignore[arg-type]
        ("queue", lambda: queue.list_tasks(queue=BAD)),
        ("after_id", lambda: queue.list_tasks(after_id=BAD)),
        ("queue", lambda: queue.get_queue_stats(queue="no spaces")),
        ("window_s", lambda: queue.get_statistics(window_s=math.inf)),
        ("within_s", lambda: queue.live_workers(within_s=math.nan)),
        ("older_than_s", lambda: queue.purge(math.nan)),
        ("queue", lambda: queue.pause_queue(BAD)),
        ("task_id", lambda: queue.hold(4)),  # type: ignore[arg-type]
        ("worker_id", lambda: queue.worker_heartbeat(BAD)),
        ("tasks", lambda: queue.enqueue(5)),  # type: ignore[arg-type]
        ("tasks", lambda: queue.enqueue(make_task())),  # type: ignore[arg-type]
        ("tasks\\[0\\]", lambda: queue.enqueue(["text"])),  # type: ignore[list-item]
    ]


async def test_every_public_method_names_the_scalar_argument_it_refuses(
    queue: WorkerQueue,
) -> None:
    task = await claim_one(queue)
    before = await queue.get_task(task.id)
    for name, call in refused_calls(queue, task):
        with pytest.raises(InvalidInputError, match=rf"^{name}\b|: {name}\b|\b{name} must"):
            await call()
    after = await queue.get_task(task.id)
    assert after == before  # nothing written
    assert (await queue.get_queue_stats())["total"] == 1


async def test_purge_takes_one_state_as_well_as_many(queue: WorkerQueue) -> None:
    assert await queue.purge(0, "completed") == 0
    with pytest.raises(InvalidInputError, match="only terminal tasks, not pending"):
        await queue.purge(0, TaskState.PENDING)


async def test_completions_in_a_batch_are_checked_before_anything_is_written(
    queue: WorkerQueue,
) -> None:
    await queue.enqueue([make_task(), make_task()])
    a, b = await queue.dequeue(2)
    with pytest.raises(InvalidInputError, match=rf"task {b.id}: results\[0\] holds"):
        await queue.complete_many(
            [Completion(a.id, a.lease_id, ["fine"]), Completion(b.id, b.lease_id, [BAD])]
        )
    assert {t.state for t in await queue.list_tasks()} == {TaskState.PROCESSING}


@pytest.mark.parametrize("field", ["name", "idempotency_key"])
async def test_a_nul_in_a_text_column_is_refused_naming_the_field(
    queue: WorkerQueue, field: str
) -> None:
    """PostgreSQL's text cannot hold NUL: refused up front, on every backend alike, with the
    batch (one good task first) left unwritten."""
    good, bad = make_task(name="fine"), make_task(**{field: "a\x00b"})
    with pytest.raises(InvalidTaskError, match=rf"tasks\[1\].*{field} holds a NUL character"):
        await queue.enqueue([good, bad])
    assert (await queue.get_queue_stats())["total"] == 0

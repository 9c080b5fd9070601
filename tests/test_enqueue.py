"""Enqueue: atomic bulk insert, validation at the edge, ids, idempotency, ordering."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from tests.support import FakeClock, make_task, raw_sql
from tts import TextToSpeechRequest
from worker import (
    DuplicateTaskError,
    InvalidTaskError,
    Priority,
    Task,
    TaskItem,
    TaskState,
    WorkerQueue,
    register_request_kind,
)
from worker.core.ids import is_ulid, new_id
from worker.core.kinds import remove_request_kind
from worker.core.models import UnloadedRequest


async def test_guide_example_enqueues(queue: WorkerQueue, clock: FakeClock) -> None:
    task = Task(
        id="",
        state=TaskState.PENDING,
        schedule_at=0,
        items=[
            TaskItem(
                request=TextToSpeechRequest(text="Hello, world!", voice_id="kokoro.af_heart"),
                response_url="https://your-webhook.com/callback",
            )
        ],
        created_at=0,
        updated_at=0,
    )
    assert await queue.enqueue([task]) == 1
    assert is_ulid(task.id)
    stored = await queue.get_task(task.id)
    assert stored.created_at == stored.updated_at == stored.schedule_at == clock.now
    assert stored.items[0].request == task.items[0].request
    assert stored.items[0].response_url == "https://your-webhook.com/callback"
    assert stored.queue == "default"
    assert stored.attempt_count == 0


async def test_ids_are_monotonic_so_fifo_holds(queue: WorkerQueue) -> None:
    tasks = [make_task(str(n)) for n in range(500)]
    await queue.enqueue(tasks)
    ids = [t.id for t in tasks]
    assert ids == sorted(ids)
    assert len(set(ids)) == 500
    claimed = await queue.dequeue(size=500)
    assert [t.id for t in claimed] == ids


async def test_one_invalid_task_inserts_nothing(queue: WorkerQueue) -> None:
    good = [make_task(str(n)) for n in range(3)]
    bad: dict[str, Any] = {"items": [], "priority": 1}
    with pytest.raises(InvalidTaskError, match=r"tasks\[3\].*items"):
        await queue.enqueue([*good, bad])
    assert (await queue.get_queue_stats())["total"] == 0


async def test_mappings_are_validated(queue: WorkerQueue) -> None:
    item = TaskItem(request=TextToSpeechRequest(text="hi", voice_id="piper.x"))
    assert await queue.enqueue([{"items": [item], "priority": 5}]) == 1
    with pytest.raises(InvalidTaskError, match=r"tasks\[0\].*priority"):
        await queue.enqueue([{"items": [item], "priority": "high"}])


def test_models_refuse_bad_fields() -> None:
    with pytest.raises(ValueError, match="letter or digit"):
        TextToSpeechRequest(text="...", voice_id="kokoro.af_heart")
    with pytest.raises(ValueError, match="voice_id"):
        TextToSpeechRequest(text="hi", voice_id="af_heart")
    with pytest.raises(ValueError, match="response_url"):
        TaskItem(request=TextToSpeechRequest(text="hi", voice_id="a.b"), response_url="nope")
    with pytest.raises(ValueError, match="registered request model"):
        TaskItem(request={"text": "hi"})
    with pytest.raises(ValueError, match="ULID"):
        make_task(id="my-id")
    task = make_task()
    with pytest.raises(ValueError, match="priority"):
        task.priority = "urgent"  # type: ignore[assignment]


async def test_non_pending_task_is_refused(queue: WorkerQueue) -> None:
    with pytest.raises(InvalidTaskError, match="must be pending"):
        await queue.enqueue([make_task(state=TaskState.COMPLETED)])


async def test_unregistered_request_model_is_refused(queue: WorkerQueue) -> None:
    class Stranger(BaseModel):
        x: int = 1

    task = Task(items=[TaskItem(request=Stranger())])
    with pytest.raises(InvalidTaskError, match=r"tasks\[1\]\.items.*Stranger.*not a registered"):
        await queue.enqueue([make_task(), task])
    assert (await queue.get_queue_stats())["total"] == 0


async def test_duplicate_id_inserts_nothing(queue: WorkerQueue) -> None:
    first = make_task()
    await queue.enqueue([first])
    again = make_task(id=first.id)
    with pytest.raises(DuplicateTaskError, match=first.id):
        await queue.enqueue([make_task("new"), again])
    assert (await queue.get_queue_stats())["total"] == 1


async def test_a_batch_that_repeats_an_id_inserts_nothing(queue: WorkerQueue) -> None:
    """The batch collides with itself (on PostgreSQL inside its COPY): the id is named."""
    repeated = new_id()
    with pytest.raises(DuplicateTaskError, match=repeated):
        await queue.enqueue([make_task(id=repeated), make_task("new"), make_task(id=repeated)])
    assert (await queue.get_queue_stats())["total"] == 0
    assert await queue.enqueue([make_task("after")]) == 1  # the transaction ended cleanly


BIG_BATCH = 2_500  # past any 1,000-row chunking, and past the inline transaction's 256 rows


@pytest.mark.parametrize("last_row", ["an existing id", "an unknown dependency"])
async def test_a_big_batch_that_fails_at_its_last_row_writes_nothing(
    queue: WorkerQueue, database_url: str, last_row: str
) -> None:
    existing = make_task(name="existing")
    await queue.enqueue([existing])
    batch = [make_task(name=f"bulk {n}") for n in range(BIG_BATCH - 1)]
    if last_row == "an existing id":  # only the INSERT finds it: the ids are all valid ULIDs
        batch.append(make_task(name="last", id=existing.id))
        refused: type[Exception] = DuplicateTaskError
    else:  # found after every row is inserted, in the same transaction
        batch.append(make_task(name="last", depends_on=[new_id()]))
        refused = InvalidTaskError
    with pytest.raises(refused, match=rf"{existing.id}|tasks\[{BIG_BATCH - 1}\]\.depends_on"):
        await queue.enqueue(batch)
    # What is stored, not what the queue says.
    assert await raw_sql(database_url, "SELECT name FROM tasks") == [("existing",)]
    assert await raw_sql(database_url, "SELECT count(*) FROM task_dependencies") == [(0,)]


async def test_idempotency_key_returns_the_live_task(queue: WorkerQueue) -> None:
    first = make_task(idempotency_key="order-42")
    assert await queue.enqueue([first]) == 1
    second = make_task(idempotency_key="order-42")
    third = make_task(idempotency_key="order-42")
    assert await queue.enqueue([second, third, make_task(idempotency_key="order-43")]) == 1
    assert second.id == third.id == first.id
    assert (await queue.get_queue_stats())["total"] == 2

    (claimed, _) = await queue.dequeue(size=2)
    await queue.mark_as_complete(claimed.id)
    fresh = make_task(idempotency_key="order-42")
    assert await queue.enqueue([fresh]) == 1, "a finished task frees its key"
    assert fresh.id != first.id


async def test_a_new_key_twice_in_one_batch_inserts_the_first_task_only(
    queue: WorkerQueue,
) -> None:
    first = make_task(name="first", idempotency_key="new-key")
    other = make_task(name="other", idempotency_key="another-key")
    second = make_task(name="second", idempotency_key="new-key")
    assert await queue.enqueue([first, other, second]) == 2
    assert second.id == first.id
    assert other.id != first.id
    stored = await queue.list_tasks()
    assert sorted((t.id, t.name) for t in stored) == sorted(
        [(first.id, "first"), (other.id, "other")]
    )


async def test_priority_then_fifo(queue: WorkerQueue) -> None:
    low = make_task("low", priority=Priority.LOW)
    normal = [make_task(f"n{n}") for n in range(3)]
    high = make_task("high", priority=Priority.HIGH)
    critical = make_task("critical", priority=Priority.CRITICAL)
    await queue.enqueue([low, *normal, high, critical])
    claimed = await queue.dequeue(size=4)
    assert [t.id for t in claimed] == [critical.id, high.id, normal[0].id, normal[1].id]
    rest = await queue.dequeue(size=10)
    assert [t.id for t in rest] == [normal[2].id, low.id]


async def test_delayed_tasks_wait(queue: WorkerQueue, clock: FakeClock) -> None:
    later = make_task(schedule_at=clock.now + 60, priority=Priority.CRITICAL)
    now = make_task()
    await queue.enqueue([later, now])
    assert [t.id for t in await queue.dequeue(size=10)] == [now.id]
    clock.advance(60)
    assert [t.id for t in await queue.dequeue(size=10)] == [later.id]


async def test_dequeue_by_queue_name(queue: WorkerQueue) -> None:
    audio = make_task(queue="audio")
    speech = make_task(queue="speech")
    await queue.enqueue([audio, speech])
    assert [t.id for t in await queue.dequeue(queues=["speech"])] == [speech.id]
    assert await queue.dequeue(queues=["other"]) == []
    assert [t.id for t in await queue.dequeue()] == [audio.id]


async def test_empty_enqueue(queue: WorkerQueue) -> None:
    assert await queue.enqueue([]) == 0


class Echo(BaseModel):
    text: str


async def test_unknown_kind_is_discarded_without_breaking_the_batch(queue: WorkerQueue) -> None:
    register_request_kind("echo")(Echo)
    try:
        doomed = Task(items=[TaskItem(request=Echo(text="x"))])
        await queue.enqueue([make_task("before"), doomed, make_task("after")])
    finally:
        remove_request_kind("echo")  # this process now lacks the plugin
    claimed = await queue.dequeue(size=10)
    assert len(claimed) == 2
    assert doomed.id not in {t.id for t in claimed}
    stored = await queue.get_task(doomed.id)
    assert stored.state is TaskState.DISCARDED
    assert stored.last_error is not None
    assert "unknown request kind 'echo'" in stored.last_error
    assert "start it with the module that registers it" in stored.last_error
    request = stored.items[0].request
    assert isinstance(request, UnloadedRequest), "reads still show what is stored"
    assert (request.kind, request.data) == ("echo", {"text": "x"})


async def test_payload_that_no_longer_validates_is_discarded(
    queue: WorkerQueue, database_url: str
) -> None:
    task = make_task()
    await queue.enqueue([task, make_task("fine")])
    # An older version wrote a payload we now refuse.
    [(text,)] = await raw_sql(
        database_url, "SELECT CAST(items AS TEXT) FROM tasks WHERE id = :id", {"id": task.id}
    )
    items = json.loads(text)
    items[0]["request"]["voice_id"] = "no-dot"
    await raw_sql(
        database_url,
        "UPDATE tasks SET items = :items WHERE id = :id",
        {"items": json.dumps(items), "id": task.id},
    )
    claimed = await queue.dequeue(size=10)
    assert [t.items[0].request for t in claimed] == [
        TextToSpeechRequest(text="fine", voice_id="kokoro.af_heart")
    ]
    stored = await queue.get_task(task.id)
    assert stored.state is TaskState.DISCARDED
    assert stored.last_error is not None
    assert "'tts' request no longer validates" in stored.last_error
    assert "voice_id" in stored.last_error


async def test_a_batch_entirely_of_live_keys_inserts_nothing(queue: WorkerQueue) -> None:
    first = make_task(idempotency_key="only")
    await queue.enqueue([first])
    again = make_task(idempotency_key="only")
    assert await queue.enqueue([again]) == 0
    assert again.id == first.id

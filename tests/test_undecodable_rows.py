"""Rows the queue cannot read whole, written directly with sqlite3 (as an older version or
another program could): text that is not UTF-8, JSON columns that do not parse. None stops
the sweep, a claim batch, ``get_task``, a ``list_tasks`` page or ``get_statistics``: each is
reported by task id and shown with replacements, or (claimed) discarded with a ``system:``
error."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from tests.support import FakeClock, make_task
from worker import TaskState, WorkerQueue

pytestmark = pytest.mark.sqlite_only(
    "PostgreSQL refuses text that is not UTF-8 and JSON that does not parse when they are "
    "written, so such rows cannot arise there"
)

NOT_UTF8 = "CAST(X'6E6F74FF7574662D38' AS TEXT)"  # b"not\xffutf-8"
SHOWN = "not\ufffdutf-8"


def tamper(db_path: Path, task_id: str, assignments: str) -> None:
    """``UPDATE tasks SET <assignments> WHERE id = task_id``, from another connection."""
    with sqlite3.connect(db_path) as conn:
        changed = conn.execute(f"UPDATE tasks SET {assignments} WHERE id = ?", (task_id,))
        assert changed.rowcount == 1
    conn.close()


async def all_reads_work(queue: WorkerQueue, expected: int) -> None:
    page = await queue.list_tasks(limit=1000)
    assert len(page) == expected
    for task in page:
        assert (await queue.get_task(task.id)).id == task.id
    stats = await queue.get_statistics()
    assert stats["states"]["total"] == expected


@pytest.mark.parametrize("column", ["last_error", "errors"])
async def test_the_sweep_and_reads_go_on_past_a_retryable_row_that_is_not_utf8(
    queue: WorkerQueue, db_path: Path, column: str, caplog: pytest.LogCaptureFixture
) -> None:
    await queue.enqueue([make_task(), make_task(), make_task()])
    tasks = await queue.dequeue(3)
    for task in tasks:
        await queue.mark_as_retry(task.id, "boom", lease_id=task.lease_id)
    bad = tasks[1]
    entry = f"json_object('attempt', 1, 'error', {NOT_UTF8}, 'at', 1.0, 'expired', json('false'))"
    value = NOT_UTF8 if column == "last_error" else f"json_array({entry})"
    tamper(db_path, bad.id, f"{column} = {value}")

    with caplog.at_level(logging.WARNING):
        swept = await queue.retry()
    assert sorted(t.id for t in swept) == sorted(t.id for t in tasks)
    assert {t.state for t in swept} == {TaskState.PENDING}
    assert f"task {bad.id} cannot be read whole" in caplog.text
    assert f"{column}: not UTF-8 text" in caplog.text

    shown = await queue.get_task(bad.id)
    if column == "last_error":
        assert shown.last_error == SHOWN
    else:
        assert shown.errors[0].error == SHOWN
    await all_reads_work(queue, 3)


async def test_a_claim_batch_discards_a_row_that_is_not_utf8_and_hands_out_the_rest(
    queue: WorkerQueue, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tasks = [make_task(), make_task(), make_task(), make_task()]
    await queue.enqueue(tasks)
    tamper(db_path, tasks[1].id, f"metadata = json_object('k', {NOT_UTF8})")  # a plain claim
    tamper(db_path, tasks[2].id, f"checkpoint = json_object('k', {NOT_UTF8})")  # a whole row

    with caplog.at_level(logging.ERROR):
        claimed = await queue.dequeue(10)
    assert [t.id for t in claimed] == [tasks[0].id, tasks[3].id]
    for bad, column in ((tasks[1], "metadata"), (tasks[2], "checkpoint")):
        assert f"discarding task {bad.id}" in caplog.text
        discarded = await queue.get_task(bad.id)
        assert discarded.state is TaskState.DISCARDED
        assert discarded.last_error == (
            f"system: cannot load task: stored text is not UTF-8 (column {column})"
        )
    assert (await queue.get_task(tasks[1].id)).metadata == {"k": SHOWN}
    # The next claims take the fast path again: nothing bad is left to claim.
    await queue.enqueue([make_task()])
    assert len(await queue.dequeue(10)) == 1
    await all_reads_work(queue, 5)


async def test_an_expired_lease_on_a_row_that_is_not_utf8_still_comes_back(
    queue: WorkerQueue, db_path: Path, clock: FakeClock
) -> None:
    await queue.enqueue([make_task(), make_task()])
    claimed = await queue.dequeue(2)
    tamper(db_path, claimed[0].id, f"outcomes = json_array(json_object('result', {NOT_UTF8}))")
    clock.advance(60)  # past the 30 s lease
    swept = await queue.retry()
    assert {t.id for t in swept} == {t.id for t in claimed}
    back = {t.id: t for t in swept}[claimed[0].id]
    assert back.state is TaskState.PENDING  # expired, then requeued after its backoff
    assert back.items[0].result == SHOWN
    await all_reads_work(queue, 2)


async def test_a_retry_policy_that_cannot_be_read_falls_back_to_the_queues_backoff(
    queue: WorkerQueue, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await queue.enqueue([make_task(), make_task()])
    tasks = await queue.dequeue(2)
    for task in tasks:
        await queue.mark_as_retry(task.id, "boom", lease_id=task.lease_id)
    tamper(db_path, tasks[0].id, f"retry_policy = {NOT_UTF8}")
    tamper(db_path, tasks[1].id, 'retry_policy = \'{"kind": "sometimes"}\'')
    with caplog.at_level(logging.WARNING):
        swept = await queue.retry()
    assert {t.state for t in swept} == {TaskState.PENDING}
    assert f"task {tasks[0].id}: its retry policy is not UTF-8" in caplog.text
    assert f"task {tasks[1].id}: its retry policy cannot be read" in caplog.text
    await all_reads_work(queue, 2)


@pytest.mark.parametrize(
    ("assignment", "shown"),
    [
        ("metadata = '{not json'", "metadata"),
        ("errors = '[1, 2]'", "errors"),
        ("outcomes = '{\"a\": 1}'", "outcomes"),
        ("items = 'not json'", "items"),
        ("items = '[]'", "items"),
        ("items = 7", "items"),
    ],
)
async def test_a_row_whose_json_does_not_parse_is_shown_and_discarded_when_claimed(
    queue: WorkerQueue,
    db_path: Path,
    assignment: str,
    shown: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = [make_task(), make_task()]
    await queue.enqueue(tasks)
    tamper(db_path, tasks[0].id, assignment)
    with caplog.at_level(logging.WARNING):
        page = await queue.list_tasks()
        assert [t.id for t in page] == [t.id for t in tasks]
        assert f"task {tasks[0].id} cannot be read whole" in caplog.text
        assert f"shown without {shown}" in caplog.text
        if shown == "items":
            assert page[0].items[0].request.kind == "unknown"  # type: ignore[attr-defined]
        claimed = await queue.dequeue(10)
    assert [t.id for t in claimed] == [tasks[1].id]
    discarded = await queue.get_task(tasks[0].id)
    assert discarded.state is TaskState.DISCARDED
    assert (discarded.last_error or "").startswith("system: cannot load task:")
    await queue.retry()
    await all_reads_work(queue, 2)


async def test_a_queue_name_that_is_not_utf8_stops_neither_statistics_nor_claims(
    queue: WorkerQueue, db_path: Path
) -> None:
    tasks = [make_task(), make_task()]
    await queue.enqueue(tasks)
    tamper(db_path, tasks[0].id, f"queue = {NOT_UTF8}")
    stats = await queue.get_statistics()
    assert stats["queues"] == {SHOWN: {"pending": 1}, "default": {"pending": 1}}
    assert [t.id for t in await queue.dequeue(10)] == [tasks[1].id]
    discarded = await queue.get_task(tasks[0].id)
    assert discarded.state is TaskState.DISCARDED
    assert discarded.queue == SHOWN
    await all_reads_work(queue, 2)

"""Rows become tasks in one place; the fast path builds exactly what pydantic would."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import BaseModel

from tests.support import FakeClock, make_task, raw_sql
from tts import TextToSpeechRequest
from worker import (
    AttemptError,
    QueueConfig,
    Task,
    TaskItem,
    TaskState,
    WorkerQueue,
    register_request_kind,
)
from worker.core.ids import new_ids
from worker.core.kinds import remove_request_kind
from worker.core.models import Resources, RetryPolicy, UnloadedRequest
from worker.storage import enqueue_claim as store
from worker.storage import payload
from worker.storage.payload import PayloadError, items_from_json, trusted
from worker.storage.row_decode import UNPACK_ORDER, task_from_claim, task_from_values
from worker.storage.rows import (
    RAW_COLUMNS,
    ROW_COLUMNS,
    ROW_FIELDS,
    UniformRows,
    insert_values,
    items_json,
    uniform_rows,
)
from worker.storage.schema import tasks
from worker.storage.sql import json_values
from worker.storage.sqlite.bulk import MultiRowInsert
from worker.storage.statements import (
    CLAIM_COLUMNS,
    CLAIM_DEFAULTS,
    INSERT_COLUMNS,
    PLAIN_INSERT_COLUMNS,
    Statements,
)


def test_trusted_matches_model_construct() -> None:
    fields = make_task().model_dump()
    fields["items"] = make_task().items
    fields["errors"] = [AttemptError(attempt=1, error="x", at=1.0)]
    fields["state"] = TaskState.PROCESSING
    fields["resources"] = Resources(memory_bytes=1)
    fast = trusted(Task, dict(fields))
    slow = Task.model_construct(**dict(fields))
    assert fast == slow
    assert fast.model_fields_set == slow.model_fields_set
    assert fast.model_dump() == slow.model_dump()
    assert set(fields) == set(Task.model_fields), "every field is given"
    item_fields: dict[str, Any] = {
        "request": slow.items[0].request,
        "response_url": None,
        "result": 1,
        "error": None,
    }
    assert trusted(TaskItem, dict(item_fields)) == TaskItem.model_construct(**item_fields)
    fast.priority = 7  # assignment still validates
    assert fast.priority == 7


def test_row_unpacking_follows_the_table() -> None:
    assert UNPACK_ORDER == ROW_COLUMNS


def _stored(*items: tuple[str, Any]) -> str:
    return json.dumps(
        [{"kind": kind, "request": request, "response_url": None} for kind, request in items]
    )


def test_items_parse_in_one_call_and_item_by_item_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    text = _stored(
        ("tts", {"text": "one", "voice_id": "espeak.en"}),
        ("audio", {"path": "data/in.wav", "operations": [{"op": "analyze"}]}),
    )
    outcomes = [{"result": {"ok": 1}, "error": None}]
    fast = items_from_json(text, outcomes, lenient=False)

    def slow_only(_text: str) -> None:
        return None

    monkeypatch.setattr(payload._parser, "parse", slow_only)
    slow = items_from_json(text, outcomes, lenient=False)
    assert fast == slow
    assert [type(item.request).__name__ for item in fast] == ["TextToSpeechRequest", "AudioRequest"]
    assert fast[0].result == {"ok": 1}
    assert fast[1].result is None


def test_a_kind_registered_later_joins_the_one_call_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    items_from_json(_stored(("tts", {"text": "x", "voice_id": "espeak.en"})), [], lenient=False)

    @register_request_kind("late-kind-for-rows-test")
    class Late(BaseModel):
        n: int

    try:

        def no_slow_path(*_args: Any, **_kwargs: Any) -> None:
            raise AssertionError("the one-call parse should have taken it")

        monkeypatch.setattr(payload, "_item", no_slow_path)
        (item,) = items_from_json(_stored(("late-kind-for-rows-test", {"n": 3})), [], lenient=False)
        assert item.request == Late(n=3)
    finally:
        remove_request_kind("late-kind-for-rows-test")


def test_bad_stored_items_still_say_what_is_wrong() -> None:
    with pytest.raises(PayloadError, match="unknown request kind 'nope'"):
        items_from_json(_stored(("nope", {})), [], lenient=False)
    with pytest.raises(PayloadError, match="item 0: stored 'tts' request no longer validates"):
        items_from_json(_stored(("tts", {"text": ""})), [], lenient=False)
    with pytest.raises(PayloadError, match="not a non-empty list"):
        items_from_json("[]", [], lenient=False)
    (item,) = items_from_json(_stored(("nope", {"a": 1})), [], lenient=True)
    assert isinstance(item.request, UnloadedRequest)
    assert item.request.data == {"a": 1}


def test_tasks_built_from_rows_share_no_mutable_state() -> None:
    row = tuple(
        {
            "id": "01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "queue": "default",
            "state": "pending",
            "priority": 0,
            "items": _stored(("tts", {"text": "x", "voice_id": "espeak.en"})),
            "errors": "[]",
            "metadata": "{}",
            "held": 0,
            "waiting_on": 0,
            "dependents": 0,
            "memory_bytes": 0,
            "cpu_share": 0.0,
            "needs_gpu": 0,
            "attempt_count": 0,
            "expired_count": 0,
            "created_at": 1.0,
            "updated_at": 1.0,
            "schedule_at": 1.0,
        }.get(column)
        for column in ROW_COLUMNS
    )
    first, second = task_from_values(row), task_from_values(row)
    first.priority = 5
    first.metadata["k"] = "v"
    first.depends_on.append("x")
    assert second.priority == 0
    assert second.metadata == {}
    assert second.depends_on == []
    assert first.model_fields_set == second.model_fields_set == set(Task.model_fields)


def test_insert_values_come_in_the_compiled_insert_order() -> None:
    # A bulk insert passes each row's values straight through when the order matches.
    statements = Statements(sa.create_engine("sqlite://").dialect)
    assert statements.insert.names == INSERT_COLUMNS
    assert statements.insert_plain.names == PLAIN_INSERT_COLUMNS == INSERT_COLUMNS[:-2]
    plain = make_task("x")  # names no callback: two values fewer
    assert len(insert_values(plain, "[]")) == len(PLAIN_INSERT_COLUMNS)
    task = make_task(
        "x",
        name="n",
        queue="q",
        priority=7,
        max_attempts=4,
        visibility_timeout=9.5,
        idempotency_key="k",
        metadata={"m": 1},
        timeout_s=3.5,
        held=True,
        depends_on=["01ARZ3NDEKTSV4RRFFQ69G5FAV"],
        retry_policy=RetryPolicy(kind="fixed", delay_s=2.0),
        resources=Resources(memory_bytes=5, cpu=0.5, gpu=True),
        on_success="pkg.mod:done",
        on_failure="pkg.mod:failed",
    )
    task.__dict__.update(id="ID", created_at=1.0, updated_at=2.0, schedule_at=3.0)
    row = dict(zip(INSERT_COLUMNS, insert_values(task, "[items]"), strict=True))
    assert type(insert_values(task, "[]")) is tuple  # sqlite3 binds exact tuples fastest
    assert row == {
        "id": "ID", "queue": "q", "state": "pending", "priority": 7, "schedule_at": 3.0,
        "attempt_count": 0, "max_attempts": 4, "visibility_timeout": 9.5, "expired_count": 0,
        "errors": "[]", "items": "[items]", "name": "n", "metadata": '{"m":1}',
        "idempotency_key": "k", "created_at": 1.0, "updated_at": 2.0, "timeout_s": 3.5,
        "retry_policy": RetryPolicy(kind="fixed", delay_s=2.0).model_dump_json(), "held": True,
        "waiting_on": 0, "depends_on": '["01ARZ3NDEKTSV4RRFFQ69G5FAV"]', "memory_bytes": 5,
        "cpu_share": 0.5, "needs_gpu": True,
        "on_success": "pkg.mod:done", "on_failure": "pkg.mod:failed",
    }  # fmt: skip


async def test_a_claimed_task_is_built_as_the_row_reads_back(
    queue: WorkerQueue, clock: FakeClock
) -> None:
    """A claim returns fewer columns and fills in what it set; nothing may differ."""
    done = make_task("dependency")
    await queue.enqueue([done])
    (first,) = await queue.dequeue(size=1)
    await queue.mark_as_complete(first.id, lease_id=first.lease_id)
    tasks = [
        make_task("plain"),
        make_task(
            "everything",
            name="n",
            metadata={"k": [1, "two"]},
            idempotency_key="key",
            visibility_timeout=7.5,
            max_attempts=9,
            timeout_s=3.0,
            retry_policy=RetryPolicy(kind="fixed", delay_s=1.0),
            resources=Resources(memory_bytes=1024, cpu=0.5),
            depends_on=[done.id],
            priority=3,
        ),
        make_task("retried"),
    ]
    await queue.enqueue(tasks)
    claimed = {t.id: t for t in await queue.dequeue(size=10)}
    retried = claimed[tasks[2].id]
    await queue.save_checkpoint(retried.id, retried.lease_id or "", {"at": 2})
    await queue.mark_as_retry(retried.id, "boom", lease_id=retried.lease_id, delay_s=0)
    clock.advance(1)
    await queue.retry()
    claimed |= {t.id: t for t in await queue.dequeue(size=10)}
    assert set(claimed) == {t.id for t in tasks}
    for task_id, task in claimed.items():
        assert task == await queue.get_task(task_id)
    again = claimed[retried.id]
    assert again.attempt_count == 2
    assert [e.error for e in again.errors] == ["boom"]
    assert again.checkpoint == {"at": 2}


#: What the claim sets (from its parameters); with CLAIM_COLUMNS and CLAIM_DEFAULTS, the row.
_CLAIM_SETS = {
    "state": "processing", "lease_id": "L:ID", "lease_expires_at": 130.0, "worker_id": "w",
    "updated_at": 100.0, "started_at": 100.0, "finished_at": None, "retry_delay": None,
    "cancel_requested_at": None, "held": False, "waiting_on": 0, "dependents": 0,
}  # fmt: skip


def test_a_plain_claim_row_holds_what_the_whole_row_would() -> None:
    """task_from_claim's stand-ins for the columns a claim leaves out are CLAIM_DEFAULTS."""
    returned = {
        "id": "ID", "queue": "q", "priority": 3, "schedule_at": 5.0, "attempt_count": 1,
        "max_attempts": None, "visibility_timeout": 30.0, "name": "n", "metadata": '{"m":1}',
        "idempotency_key": "k", "created_at": 1.0, "items": items_json(make_task().items),
    }  # fmt: skip
    assert set(returned) == set(CLAIM_COLUMNS)
    whole = returned | CLAIM_DEFAULTS | _CLAIM_SETS
    assert set(whole) == set(ROW_COLUMNS)
    assert len(returned) + len(CLAIM_DEFAULTS) + len(_CLAIM_SETS) == len(ROW_COLUMNS)
    claim_row = (*(returned[name] for name in CLAIM_COLUMNS), 1)
    built = task_from_claim(claim_row, now=100.0, lease_prefix="L:", worker_id="w", default_vt=99.0)
    assert built == task_from_values(tuple(whole[name] for name in ROW_COLUMNS))


#: For each column a claim leaves out, a stored value other than its default.
_UNUSUAL = {
    "expired_count": 2,
    "last_error": "boom",
    "errors": '[{"attempt":1,"error":"boom","at":1.0,"expired":false}]',
    "outcomes": '[{"result":7,"error":null}]',
    "progress": '{"current":1.0,"total":2.0,"message":"half","at":1.0}',
    "checkpoint": '{"at":2}',
    "timeout_s": 5.0,
    "retry_policy": RetryPolicy(kind="fixed", delay_s=1.0).model_dump_json(),
    "depends_on": '["01ARZ3NDEKTSV4RRFFQ69G5FAV"]',
    "memory_bytes": 1024,
    "cpu_share": 0.5,
    "needs_gpu": True,
    "on_success": "pkg.mod:done",
    "on_failure": "pkg.mod:failed",
}


async def test_a_claim_reads_back_whole_any_task_not_plain(
    queue: WorkerQueue, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each column a claim leaves out, alone off its default, sends its task down the
    whole-row path, and only those: the claimed task is still exactly what the row reads
    back either way."""
    assert set(_UNUSUAL) == set(CLAIM_DEFAULTS)
    read_back: list[str] = []

    def whole_row(row: Any) -> Task:
        read_back.append(row[0])
        return task_from_values(row)

    monkeypatch.setattr(store, "task_from_values", whole_row)
    tasks = [make_task(column) for column in _UNUSUAL] + [make_task("plain")]
    await queue.enqueue(tasks)
    for task, (column, value) in zip(tasks, _UNUSUAL.items(), strict=False):
        update = f"UPDATE tasks SET {column} = :value WHERE id = :id"
        await raw_sql(database_url, update, {"value": value, "id": task.id})
    claimed = await queue.dequeue(size=len(tasks) + 1)
    assert len(claimed) == len(tasks)
    assert sorted(read_back) == sorted(task.id for task in tasks[:-1]), "plain: the fast path"
    for task in claimed:
        assert task == await queue.get_task(task.id)
    by_id = {task.id: task for task in claimed}
    assert by_id[tasks[0].id].expired_count == 2
    assert by_id[tasks[-4].id].resources.gpu is True
    assert by_id[tasks[-2].id].on_failure == "pkg.mod:failed"
    assert by_id[tasks[-1].id].errors == []


def test_items_json_serialises_requests_as_model_dump_json_does() -> None:
    from tts import TextToSpeechRequest
    from tts.requests import AudioRequest

    requests = [
        TextToSpeechRequest(text='héllo "quoted"', voice_id="espeak.en", speed=1.5),
        AudioRequest(path="data/in.wav", operations=[{"op": "analyze"}]),
    ]
    text = items_json([TaskItem(request=r, response_url="https://e.com/a?b=1") for r in requests])
    stored = json.loads(text)
    assert [item["request"] for item in stored] == [
        json.loads(r.model_dump_json()) for r in requests
    ]
    assert [item["kind"] for item in stored] == ["tts", "audio"]
    assert {item["response_url"] for item in stored} == {"https://e.com/a?b=1"}


async def test_a_claim_taken_away_before_its_row_is_read_back_is_not_run(
    queue: WorkerQueue, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """On PostgreSQL a claim commits before its unusual rows are read back, and a sweep may
    take it away in between (its worker presumed dead): the row then holds no lease of this
    claim, and the task is not handed out as if it did (a worker crashed on it)."""

    def swept_meanwhile() -> sa.Select[Any]:
        columns = [sa.null().label("lease_id") if c.name == "lease_id" else c for c in RAW_COLUMNS]
        return sa.select(*columns).where(tasks.c.id.in_(json_values("ids")))

    monkeypatch.setattr(store, "_claimed_rows", swept_meanwhile)
    unusual, plain = make_task("u", timeout_s=5.0), make_task("p")
    await queue.enqueue([unusual, plain])
    with caplog.at_level(logging.WARNING, logger="worker.storage.enqueue_claim"):
        claimed = await queue.dequeue(10)
    assert [task.id for task in claimed] == [plain.id]
    assert any("claim dropped" in r.getMessage() for r in caplog.records)


def test_row_fields_are_every_field_a_row_holds_but_the_id_and_the_metadata() -> None:
    """Tasks alike in ROW_FIELDS share one row but for id and items (enqueue's uniform
    rows): a field the row reads and the list leaves out would be written from the first
    task for all of them."""

    def dated() -> Task:
        task = make_task()
        task.__dict__.update(created_at=1.0, updated_at=1.0, schedule_at=1.0)
        return task

    before = insert_values(dated(), "[]")
    read = set()
    for name in Task.model_fields:
        changed = dated()
        changed.__dict__[name] = object()  # a value no field holds
        try:
            if insert_values(changed, "[]") != before:
                read.add(name)
        except (AttributeError, TypeError, ValueError):  # it read the value
            read.add(name)
    assert read - {"id", "metadata"} == set(ROW_FIELDS)
    assert {"id", "metadata"} <= read


async def test_an_enqueue_of_tasks_alike_stores_each_one_as_given(tmp_path: Path) -> None:
    shared = {"batch": 7}
    alike = [make_task(f"alike {n}", priority=2, metadata=shared) for n in range(5)]
    # Equal metadata whose JSON differs (1, 1.0, true); a task unlike those before it.
    numbers = [make_task("one", metadata={"n": 1}), make_task("float", metadata={"n": 1.0})]
    numbers.append(make_task("true", metadata={"n": True}))
    mixed = [make_task("first"), make_task("second"), make_task("late", priority=3)]
    async with WorkerQueue(QueueConfig(database_url=str(tmp_path / "rows.db"))) as queue:
        for batch in (alike, numbers, mixed):
            await queue.enqueue(batch)
            for task in batch:
                stored = await queue.get_task(task.id)
                assert stored.items[0].request == task.items[0].request
                assert (stored.priority, stored.metadata) == (task.priority, task.metadata)
                assert json.dumps(stored.metadata) == json.dumps(task.metadata)
    assert len({task.id for task in alike + numbers + mixed}) == 11


def test_a_batch_of_tasks_alike_gives_uniform_rows() -> None:
    from worker.queue.encode import task_rows

    tasks = [make_task(f"t{n}", priority=1) for n in range(4)]
    rows = task_rows(tasks, 5.0)
    assert isinstance(rows, UniformRows)
    assert list(rows) == [insert_values(task, items_json(task.items)) for task in tasks]
    unlike = [*tasks[:2], make_task("other", name="different")]
    assert not isinstance(task_rows(unlike, 5.0), UniformRows)


def test_uniform_rows_are_the_rows_each_task_would_give_and_insert_alike(
    tmp_path: Path,
) -> None:
    """``submit_many``'s rows equal :func:`insert_values` of each task, and the multi-row
    insert that reads only their varying columns stores what the one reading every row does."""
    task = make_task("template", priority=3, metadata={"m": 1})
    task.__dict__.update(created_at=1.0, updated_at=1.0, schedule_at=2.0)
    url = task.items[0].response_url
    requests = [TextToSpeechRequest(text=f"t{n}", voice_id="kokoro.af_heart") for n in range(7)]
    ids = new_ids(len(requests))
    rows = uniform_rows(insert_values(task, ""), ids, requests, url)
    expected = []
    for task_id, request in zip(ids, requests, strict=True):
        one = task.model_copy(update={"id": task_id})
        one.__dict__["items"] = [TaskItem(request=request, response_url=url)]
        expected.append(insert_values(one, items_json(one.items)))
    assert list(rows) == expected
    assert len(rows) == len(expected)
    assert [rows[i] for i in range(len(rows))] == expected  # built when read, by index too
    assert (rows[-1], rows[2:5], rows[::3]) == (expected[-1], expected[2:5], expected[::3])
    assert rows.varying() == {0: ids, INSERT_COLUMNS.index("items"): rows.items}

    insert = MultiRowInsert("t", PLAIN_INSERT_COLUMNS)
    conn = sqlite3.connect(tmp_path / "rows.db", isolation_level=None)
    conn.execute(f"CREATE TABLE t ({', '.join(PLAIN_INSERT_COLUMNS)})")
    insert(conn, rows, rows.varying())
    by_rows = conn.execute("SELECT * FROM t ORDER BY id").fetchall()
    conn.execute("DELETE FROM t")
    insert(conn, list(rows))
    assert conn.execute("SELECT * FROM t ORDER BY id").fetchall() == by_rows
    assert [row[0] for row in by_rows] == ids
    with pytest.raises(ValueError, match="another length"):
        insert(conn, rows, {**rows.varying(), 0: ids[:-1]})


def test_uniform_rows_insert_through_sqlalchemy_executemany_too(tmp_path: Path) -> None:
    """Drivers with no bulk load of their own insert a batch's rows by ``executemany``,
    which takes lists and tuples only."""
    from worker.storage.txn import ConnectionTxn

    task = make_task("template")
    requests = [TextToSpeechRequest(text=f"t{n}", voice_id="kokoro.af_heart") for n in range(3)]
    ids = new_ids(len(requests))
    rows = uniform_rows(insert_values(task, ""), ids, requests, task.items[0].response_url)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'many.db'}")
    tasks.metadata.create_all(engine)
    statements = Statements(engine.dialect, wake=False)
    with engine.begin() as conn:
        ConnectionTxn(conn, statements).many(statements.insert_plain, rows)
    with engine.connect() as conn:
        stored = conn.execute(sa.select(tasks.c.id, tasks.c.task_items).order_by(tasks.c.id)).all()
    engine.dispose()
    assert [tuple(row) for row in stored] == [
        (task_id, json.loads(text)) for task_id, text in zip(ids, rows.items, strict=True)
    ]

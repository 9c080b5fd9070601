"""Property: no input stops the queue.

Hypothesis throws arbitrary text (lone surrogates, NULs, huge strings) and JSON (deeply
nested, NaN, huge integers) at every field of an enqueue, every acknowledgement (complete
with results, retry and discard errors, cancel reasons), progress, checkpoints; after each
example the sweep, a claim batch, ``get_task``, ``list_tasks`` and ``get_statistics`` must
all still work, every refusal must be an ``InvalidInputError`` that left nothing written, and
every accepted value must read back as given (error texts: with surrogates escaped).

One real SQLite file serves every example of the test (a file each would be slow); the
invariants are checked after each example. Derandomized, without an example database and
without shrinking: the same examples on every run, a failure reported as drawn.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import JsonValue, ValidationError

from tests.runtime_worker import JobRequest
from tests.support import FakeClock
from worker import (
    InvalidInputError,
    QueueConfig,
    Task,
    TaskItem,
    WorkerQueue,
)
from worker.builtins import CallRequest
from worker.core.storable import safe_text, text_problem

pytestmark = pytest.mark.timeout(120)

# -- strategies ----------------------------------------------------------------------------

_SPECIAL_TEXT = [
    "\udcff",
    "file-\udcff.wav",
    "\ud800",
    "\udc00\ud800",
    "\x00",
    "a\x00b",
    "é ü 日本 🎙",
    "\ufffd",
    '"\\',
    "x" * 100_000,
    "é" * 50_000 + "\udcff",
]
#: Any code point (surrogates included), or a known troublemaker.
hostile_text = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=40),
    st.sampled_from(_SPECIAL_TEXT),
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    hostile_text,
)


def _nested(depth: int, leaf: JsonValue) -> JsonValue:
    value: JsonValue = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


deep_json = st.builds(
    _nested, st.sampled_from([50, 98, 99, 100, 101, 102, 150, 300, 990, 5000]), _SCALARS
)
hostile_json = st.one_of(
    st.recursive(
        _SCALARS,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(hostile_text, inner, max_size=4)
        ),
        max_leaves=12,
    ),
    deep_json,
)
hostile_number = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1e-300, 1e300, 400 * 86400.0, True]),
)
_TASK_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "name": hostile_text,
    "idempotency_key": hostile_text,
    "metadata": st.dictionaries(hostile_text, hostile_json, max_size=3),
    "queue": hostile_text,
    "priority": hostile_number,
    "schedule_at": hostile_number,
    "visibility_timeout": hostile_number,
    "timeout_s": hostile_number,
    "max_attempts": hostile_number,
    "retry_policy": st.fixed_dictionaries(
        {"kind": st.sampled_from(["exponential", "fixed", "delays"])},
        optional={
            "base_delay_s": hostile_number,
            "multiplier": hostile_number,
            "delay_s": hostile_number,
            "delays_s": st.lists(hostile_number, max_size=3),
            "deadline_s": hostile_number,
        },
    ),
}


@st.composite
def requests(draw: st.DrawFn) -> TaskItem:
    """A request with hostile values where its model lets the caller put them."""
    if draw(st.booleans()):
        request: Any = JobRequest(name=draw(hostile_text), log=None)
    else:
        try:
            request = CallRequest(
                target="math:pow",
                args=draw(st.lists(hostile_json, max_size=2)),
                kwargs=draw(st.dictionaries(hostile_text, hostile_json, max_size=2)),
            )
        except ValidationError:  # refused by the request model itself, in the caller's code
            request = JobRequest(name=draw(hostile_text))
    return TaskItem(request=request)


@st.composite
def new_tasks(draw: st.DrawFn) -> dict[str, Any]:
    chosen = draw(st.lists(st.sampled_from(sorted(_TASK_FIELDS)), max_size=3, unique=True))
    fields = {name: draw(_TASK_FIELDS[name]) for name in chosen}
    fields["items"] = draw(st.lists(requests(), min_size=1, max_size=2))
    return fields


#: An acknowledgement of a claimed task, drawn whole up front (what is claimed depends on the
#: file's state, which Hypothesis must not see: its draws would differ between runs).
acks = st.one_of(
    st.tuples(st.just("complete"), st.lists(hostile_json, min_size=1, max_size=2)),
    st.tuples(st.just("retry"), hostile_text, st.none() | hostile_number),
    st.tuples(st.just("discard"), hostile_text),
    st.tuples(
        st.just("progress"), hostile_number, st.none() | hostile_number, st.none() | hostile_text
    ),
    st.tuples(st.just("checkpoint"), hostile_json),
    st.tuples(st.just("cancel"), hostile_text),
    st.tuples(st.just("release")),
)

# -- the property --------------------------------------------------------------------------


class Model:
    """What the test knows the database holds: tasks accepted, and how to check each."""

    def __init__(self) -> None:
        self.total = 0
        self.metadata: dict[str, dict[str, JsonValue]] = {}


async def _enqueue(queue: WorkerQueue, model: Model, batch: list[dict[str, Any]]) -> None:
    try:
        tasks = [Task.model_validate(fields) for fields in batch]
    except ValidationError:
        tasks = None  # refused before the queue saw it: give the queue the raw mappings
    before = (await queue.get_queue_stats())["total"]
    try:
        inserted = await queue.enqueue(tasks if tasks is not None else batch)
    except InvalidInputError:
        assert (await queue.get_queue_stats())["total"] == before, "a refused enqueue wrote"
        return
    assert tasks is not None, "the queue accepted a batch pydantic refuses"
    assert inserted <= len(tasks)
    model.total += inserted
    for task in tasks:
        model.metadata[task.id] = task.metadata


async def _acknowledge(queue: WorkerQueue, task: Task, ack: tuple[Any, ...]) -> None:
    how, *args = ack
    lease = task.lease_id
    assert lease is not None
    before = await queue.get_task(task.id)
    try:
        if how == "complete":
            (results,) = args
            await queue.mark_as_complete(task.id, lease_id=lease, results=results)
            done = await queue.get_task(task.id)
            expected = (results + [None] * len(done.items))[: len(done.items)]
            assert [item.result for item in done.items] == expected
        elif how == "retry":
            error, delay = args
            await queue.mark_as_retry(task.id, error, lease_id=lease, delay_s=delay)
            assert (await queue.get_task(task.id)).last_error == safe_text(error)
        elif how == "discard":
            (error,) = args
            await queue.mark_as_discarded(task.id, error, lease_id=lease)
            assert (await queue.get_task(task.id)).last_error == safe_text(error)
        elif how == "progress":
            current, total, message = args
            await queue.set_progress(task.id, lease, current, total, message)
            progress = (await queue.get_task(task.id)).progress
            assert progress is not None
            assert progress.message == message
        elif how == "checkpoint":
            (saved,) = args
            await queue.save_checkpoint(task.id, lease, saved)
            assert (await queue.get_task(task.id)).checkpoint == saved
        elif how == "cancel":
            (reason,) = args
            await queue.mark_as_cancelled(task.id, lease_id=lease, reason=reason)
            assert (await queue.get_task(task.id)).last_error == safe_text(reason)
        else:
            await queue.release([(task.id, lease)])
    except InvalidInputError:
        after = await queue.get_task(task.id)
        assert after == before, f"a refused {how} wrote"


async def _still_works(queue: WorkerQueue, model: Model, clock: FakeClock) -> None:
    clock.advance(4000)  # past leases and backoffs: the sweep has work
    await queue.retry(size=1000)
    claimed = await queue.dequeue(5)
    await queue.complete_many([])
    seen, after = 0, None
    while page := await queue.list_tasks(limit=50, after_id=after):
        for task in page:
            again = await queue.get_task(task.id)
            assert again.id == task.id
            for text in (again.last_error, *(e.error for e in again.errors)):
                assert text is None or text_problem(text) is None
            if task.id in model.metadata:
                assert again.metadata == model.metadata[task.id]
        seen += len(page)
        after = page[-1].id
    stats = await queue.get_statistics()
    assert seen == model.total == stats["states"]["total"]
    for task in claimed:
        await queue.release([(task.id, task.lease_id or "")])


def test_no_input_stops_the_queue(database_url: str) -> None:
    clock = FakeClock()
    config = QueueConfig(database_url=database_url, retry_base_delay=1.0)
    model = Model()
    with asyncio.Runner() as runner:
        queue = WorkerQueue(config, worker_id="property", clock=clock)
        runner.run(queue.initialize())

        @settings(
            max_examples=120,
            deadline=None,
            derandomize=True,
            database=None,
            # No shrinking: the examples share one file, so a smaller one need not fail alike
            # (and each try costs transactions); the failing example is reported as drawn.
            phases=[Phase.explicit, Phase.generate],
            report_multiple_bugs=False,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(
            batch=st.lists(new_tasks(), min_size=1, max_size=3),
            plan=st.lists(acks, min_size=3, max_size=3),
        )
        def example(batch: list[dict[str, Any]], plan: list[tuple[Any, ...]]) -> None:
            async def run() -> None:
                await _enqueue(queue, model, batch)
                for task, ack in zip(await queue.dequeue(3), plan, strict=False):
                    await _acknowledge(queue, task, ack)
                await _still_works(queue, model, clock)

            runner.run(run())

        try:
            example()
        finally:
            runner.run(queue.close())
    assert model.total > 0  # some examples were accepted, not only refused

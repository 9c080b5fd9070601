"""Rows become tasks in one place; the fast path builds exactly what pydantic would."""

from __future__ import annotations

from typing import Any

from tests.support import make_task
from worker import AttemptError, Task, TaskItem, TaskState
from worker.models import Resources
from worker.rows import ROW_COLUMNS, UNPACK_ORDER, trusted


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

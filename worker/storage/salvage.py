"""Tasks for people from rows that cannot be read whole: one bad row never fails a read.

Reads for people (``get_task``, ``list_tasks``, the sweep's answer) build each row with
:func:`~worker.storage.row_decode.task_from_values` (``lenient``: an unloadable request becomes an
:class:`~worker.core.models.UnloadedRequest`). A row it still refuses, one written by an older
version or by another program, is shown as far as it can be read: each JSON column that
does not parse takes its empty value, and items that cannot be read become one
``UnloadedRequest`` holding the stored text. Each such task is logged by id with what was
replaced, as is a row whose text was not UTF-8 (read with U+FFFD replacements, see
:mod:`worker.storage.undecodable`). Only a row that cannot be shown even so (a state this version
does not know) is left out, logged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from worker.core.models import AttemptError, RetryPolicy, Task, TaskItem, UnloadedRequest
from worker.storage.garbled import garbled_columns
from worker.storage.payload import PayloadError, items_from_json, trusted
from worker.storage.row_decode import (
    UNPACK_ORDER,
    UNREADABLE,
    stored_json,
    task_from_values,
    unreadable,
)

log = logging.getLogger(__name__)

_AT = {name: index for index, name in enumerate(UNPACK_ORDER)}


def _errors(text: str) -> object:
    return [AttemptError.model_construct(**entry) for entry in json.loads(text)]


def _list(text: str) -> object:
    value = json.loads(text)
    if not isinstance(value, list):
        raise TypeError(f"not a list: {value!r:.100}")
    return value


def _object(text: str) -> object:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise TypeError(f"not an object: {value!r:.100}")
    return value


#: Each JSON column the way :func:`~worker.storage.row_decode.task_from_values` reads it,
#: and the stored text it takes when that fails.
_COLUMNS: dict[str, tuple[Callable[[str], object], str | None]] = {
    "errors": (_errors, "[]"),
    "outcomes": (_list, None),
    "metadata": (_object, "{}"),
    "progress": (json.loads, None),
    "checkpoint": (stored_json, None),
    "retry_policy": (RetryPolicy.model_validate_json, None),
    "depends_on": (_list, None),
}


def readable(row: Sequence[Any], *, tolerant: bool = False) -> Task | None:
    """The task of ``row`` (column order, :data:`~worker.storage.row_decode.UNPACK_ORDER`)
    as far as it can be read (None for a row that cannot be shown at all). ``tolerant``: the
    row was read with :mod:`worker.storage.garbled`'s decoder, so text that was not UTF-8 is
    reported too."""
    task_id = row[0]
    problems: list[str] = []
    if tolerant and (garbled := garbled_columns(row, UNPACK_ORDER)):
        problems.append(f"{', '.join(garbled)}: not UTF-8 text, shown with U+FFFD in its place")
    task: Task | None
    try:
        task = task_from_values(row, lenient=True)
    except UNREADABLE as error:
        task, replaced = _salvaged(row)
        problems.append(f"{unreadable(error)}; shown without {', '.join(replaced) or 'nothing'}")
    if problems:
        log.warning("task %s cannot be read whole: %s", task_id, "; ".join(problems))
    return task


def _salvaged(row: Sequence[Any]) -> tuple[Task | None, list[str]]:
    """The task of a row :func:`~worker.storage.row_decode.task_from_values` refused, with
    the columns it could not read at their empty values; and those columns' names."""
    fixed = list(row)
    replaced: list[str] = []
    for column, (read, empty) in _COLUMNS.items():
        text = fixed[_AT[column]]
        if text is None:
            continue
        try:
            read(text)
        except (ValueError, TypeError, RecursionError):
            fixed[_AT[column]] = empty
            replaced.append(column)
    items_text = fixed[_AT["items"]]
    placeholder = None
    try:
        if not isinstance(items_text, str):
            raise PayloadError(f"stored items are not JSON text: {items_text!r:.200}")
        items_from_json(items_text, [], lenient=True)
    except (PayloadError, ValueError, TypeError, RecursionError) as error:
        placeholder = UnloadedRequest(kind="unknown", data=str(items_text), problem=str(error))
        fixed[_AT["items"]] = '[{"kind":"unknown","request":null,"response_url":null}]'
        replaced.append("items")
    try:
        task = task_from_values(fixed, lenient=True)
    except UNREADABLE as error:
        log.error("task %s cannot be shown: %s", row[0], unreadable(error))
        return None, replaced
    if placeholder is not None:
        fields = {"request": placeholder, "response_url": None, "result": None, "error": None}
        task.__dict__["items"] = [trusted(TaskItem, fields)]
    return task, replaced

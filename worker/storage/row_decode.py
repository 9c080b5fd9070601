"""Rows become tasks: a row of the tasks table, in column order with JSON columns as text,
read back into a :class:`~worker.core.models.Task`.

Apart from :mod:`worker.storage.rows` (tasks become rows) because nothing here needs
SQLAlchemy: the read commands' path without it (:mod:`worker.storage.sqlite.quick_reads`)
builds its tasks with the same code.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import TypeAdapter

from worker.core.models import AttemptError, Progress, Resources, RetryPolicy, Task
from worker.core.states import TaskState
from worker.storage.payload import PayloadError, items_from_json, trusted

#: The unpacking order of :func:`task_from_values`; a test pins it to the table's columns
#: (:data:`~worker.storage.rows.ROW_COLUMNS`).
UNPACK_ORDER = (
    "id", "queue", "state", "priority", "schedule_at", "attempt_count", "max_attempts",
    "visibility_timeout", "expired_count", "retry_delay", "lease_id", "lease_expires_at",
    "worker_id", "last_error", "errors", "items", "outcomes", "name", "metadata",
    "idempotency_key", "created_at", "updated_at", "started_at", "finished_at",
    "progress", "checkpoint", "cancel_requested_at", "timeout_s", "retry_policy", "held",
    "waiting_on", "dependents", "depends_on", "memory_bytes", "cpu_share", "needs_gpu",
    "on_success", "on_failure",
)  # fmt: skip
_STATES = {state.value: state for state in TaskState}
_POLICY = TypeAdapter(RetryPolicy)


_NO_NEEDS = Resources()


def _resources(memory_bytes: int, cpu: float, gpu: bool) -> Resources:
    if not (memory_bytes or cpu or gpu):
        return _NO_NEEDS
    return Resources.model_construct(memory_bytes=memory_bytes, cpu=cpu, gpu=bool(gpu))


def _progress(value: Any) -> Progress | None:
    return Progress.model_construct(**value) if isinstance(value, dict) else None


_PROCESSING = TaskState.PROCESSING.value


def task_from_claim(
    row: Sequence[Any], *, now: float, lease_prefix: str, worker_id: str | None, default_vt: float
) -> Task:
    """Build a just-claimed task from a claim's row
    (:data:`~worker.storage.statements.CLAIM_COLUMNS` and ``plain``, which must be true),
    the values the claim set (its parameters) and the defaults of
    :data:`~worker.storage.statements.CLAIM_DEFAULTS`: the same task
    :func:`task_from_values` builds from the whole row, which tests pin."""
    (
        task_id, queue, priority, schedule_at, attempt_count, max_attempts,
        visibility_timeout, items, name, metadata, idempotency_key, created_at, _plain,
    ) = row  # fmt: skip
    lease_s = visibility_timeout if visibility_timeout is not None else default_vt
    whole = (
        task_id, queue, _PROCESSING, priority, schedule_at, attempt_count, max_attempts,
        visibility_timeout, 0, None, lease_prefix + task_id, now + lease_s,
        worker_id, None, "[]", items, None, name, metadata,
        idempotency_key, created_at, now, now, None,
        None, None, None, None, None, False,
        0, 0, None, 0, 0.0, False,
        None, None,
    )  # fmt: skip
    return task_from_values(whole)


_TASK_FIELDS = set(Task.model_fields)


def stored_json(value: Any) -> Any:
    """A JSON column that may hold any JSON value (``checkpoint``): its text parsed. SQLite
    gives JSON columns NUMERIC affinity, so a bare number is stored (and comes back) as a
    number, not as its text."""
    if value is None or isinstance(value, int | float):
        return value
    return json.loads(value)


_EMPTY = (None, "[]", "{}", "null")


#: What :func:`task_from_values` raises for a row it cannot read.
UNREADABLE = (PayloadError, ValueError, TypeError, KeyError, IndexError, RecursionError)


def unreadable(error: BaseException) -> str:
    """Why a row could not be read, from one of :data:`UNREADABLE`."""
    if isinstance(error, PayloadError):
        return str(error)
    return f"stored row cannot be read: {type(error).__name__}: {error}"


def task_from_values(row: Sequence[Any], *, lenient: bool = False) -> Task:
    """Build a task from a row in table column order (:data:`UNPACK_ORDER`; JSON columns
    as text).

    A request that cannot be loaded raises :class:`PayloadError`, or with ``lenient`` (reads
    for people: status, listings) comes back as an :class:`UnloadedRequest`. A row that
    cannot be read otherwise (a column that is not the JSON it should be, an unknown state)
    raises one of :data:`UNREADABLE` either way (:func:`unreadable` says why;
    :mod:`worker.storage.salvage` shows what it can of the row). Columns that are almost always
    empty are tested before any parsing: this runs for every claimed task.
    """
    (
        task_id, queue, state, priority, schedule_at, attempt_count, max_attempts,
        visibility_timeout, expired_count, _retry_delay, lease_id, lease_expires_at,
        worker_id, last_error, errors, items, outcomes, name, metadata,
        idempotency_key, created_at, updated_at, started_at, finished_at,
        progress, checkpoint, cancel_requested_at, timeout_s, retry_policy, held,
        waiting_on, _dependents, depends_on, memory_bytes, cpu_share, needs_gpu,
        on_success, on_failure,
    ) = row  # fmt: skip
    if not isinstance(items, str):
        raise PayloadError(f"stored items are not JSON text: {items!r:.200}")
    done = [] if outcomes in _EMPTY else json.loads(outcomes)
    return trusted(
        Task,
        {
            "id": task_id,
            "queue": queue,
            "state": _STATES[state],
            "priority": priority,
            "schedule_at": schedule_at,
            "items": items_from_json(items, done, lenient=lenient),
            "attempt_count": attempt_count,
            "max_attempts": max_attempts,
            "visibility_timeout": visibility_timeout,
            "expired_count": expired_count,
            "lease_id": lease_id,
            "lease_expires_at": lease_expires_at,
            "worker_id": worker_id,
            "last_error": last_error,
            "errors": []
            if errors in _EMPTY
            else [AttemptError.model_construct(**e) for e in json.loads(errors)],
            "created_at": created_at,
            "updated_at": updated_at,
            "started_at": started_at,
            "finished_at": finished_at,
            "name": name,
            "metadata": {} if metadata in _EMPTY else json.loads(metadata),
            "idempotency_key": idempotency_key,
            "timeout_s": timeout_s,
            "retry_policy": None if retry_policy in _EMPTY else _POLICY.validate_json(retry_policy),
            "held": bool(held),
            "depends_on": [] if depends_on in _EMPTY else json.loads(depends_on),
            "waiting_on": waiting_on,
            "progress": None if progress in _EMPTY else _progress(json.loads(progress)),
            "checkpoint": stored_json(checkpoint),
            "cancel_requested_at": cancel_requested_at,
            "resources": _NO_NEEDS
            if not (memory_bytes or cpu_share or needs_gpu)
            else _resources(memory_bytes, cpu_share, needs_gpu),
            "on_success": on_success,
            "on_failure": on_failure,
        },
        _TASK_FIELDS,
    )

"""Rows become tasks, and tasks rows, here and nowhere else.

Rows arrive as plain tuples in table column order (:data:`ROW_COLUMNS`) with JSON columns
still as text: the hot path skips SQLAlchemy's per-column type processing, and the JSON
that is almost always empty (``[]``, ``{}``) is not parsed at all.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel, TypeAdapter, ValidationError

from worker import kinds
from worker.errors import UnknownRequestKindError
from worker.models import (
    AttemptError,
    Progress,
    Resources,
    RetryPolicy,
    Task,
    TaskItem,
    UnloadedRequest,
)
from worker.schema import tasks
from worker.states import TaskState

#: Table columns in order: what ``RETURNING *`` and :data:`RAW_COLUMNS` yield.
ROW_COLUMNS = tuple(column.name for column in tasks.c)
_JSON_COLUMNS = {c.key for c in tasks.c if isinstance(c.type, sa.JSON)}
#: Every column, JSON ones as raw text, for SELECTs whose rows go to :func:`task_from_values`.
RAW_COLUMNS = tuple(
    sa.type_coerce(c, sa.Text).label(c.name) if c.key in _JSON_COLUMNS else c for c in tasks.c
)


M = TypeVar("M", bound=BaseModel)
_set = object.__setattr__


def trusted(model: type[M], fields: dict[str, Any]) -> M:
    """``model.model_construct(**fields)`` for data read back from our own rows.

    Every field is given and none has an alias, so pydantic's per-field loop over defaults
    and aliases (the bulk of a claim's CPU time) has nothing to do; this sets what
    ``model_construct`` sets. A test pins the equivalence.
    """
    instance = model.__new__(model)
    _set(instance, "__dict__", fields)
    _set(instance, "__pydantic_fields_set__", set(fields))
    _set(instance, "__pydantic_extra__", None)
    _set(instance, "__pydantic_private__", None)
    return instance


class PayloadError(Exception):
    """A stored request cannot be loaded: unknown kind, or it no longer validates."""


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _loads(text: str | None, empty: Any) -> Any:
    if text is None or text in ("[]", "{}"):
        return empty
    return json.loads(text)


def items_json(items: list[TaskItem]) -> str:
    """The ``items`` column's JSON text: each item's kind name, request and response URL."""
    parts = []
    for item in items:
        kind = kinds.kind_of(type(item.request))
        parts.append(
            f'{{"kind":{_dumps(kind)},"request":{item.request.model_dump_json()},'
            f'"response_url":{_dumps(item.response_url)}}}'
        )
    return f"[{','.join(parts)}]"


def outcomes_json(results: Sequence[Any]) -> str:
    """The ``outcomes`` column's JSON text for per-item results."""
    return _dumps([{"result": result, "error": None} for result in results])


def insert_values(task: Task, items: str) -> dict[str, Any]:
    """Values for :data:`worker.statements.INSERT_COLUMNS` (JSON already encoded)."""
    return {
        "id": task.id,
        "queue": task.queue,
        "state": TaskState.PENDING.value,
        "priority": task.priority,
        "schedule_at": task.schedule_at,
        "attempt_count": 0,
        "max_attempts": task.max_attempts,
        "visibility_timeout": task.visibility_timeout,
        "expired_count": 0,
        "errors": "[]",
        "items": items,
        "metadata": _dumps(task.metadata) if task.metadata else "{}",
        "name": task.name,
        "idempotency_key": task.idempotency_key,
        "created_at": task.created_at,
        "updated_at": task.updated_at,
        "timeout_s": task.timeout_s,
        "retry_policy": None if task.retry_policy is None else task.retry_policy.model_dump_json(),
        "held": task.held,
        "depends_on": _dumps(task.depends_on) if task.depends_on else None,
        "waiting_on": 0,
        "memory_bytes": task.resources.memory_bytes,
        "cpu_share": task.resources.cpu,
        "needs_gpu": task.resources.gpu,
    }


def _request(raw: dict[str, Any], index: int) -> BaseModel:
    kind = raw.get("kind")
    try:
        model = kinds.model_for(str(kind))
    except UnknownRequestKindError as exc:
        raise PayloadError(f"item {index}: {exc}") from exc
    try:
        return model.model_validate(raw.get("request"))
    except ValidationError as exc:
        raise PayloadError(
            f"item {index}: stored {kind!r} request no longer validates: {exc}"
        ) from exc


def _item(raw: dict[str, Any], outcome: Any, index: int, *, lenient: bool) -> TaskItem:
    try:
        request = _request(raw, index)
    except PayloadError as exc:
        if not lenient:
            raise
        request = UnloadedRequest(
            kind=str(raw.get("kind")), data=raw.get("request"), problem=str(exc)
        )
    outcome = outcome if isinstance(outcome, dict) else {}
    return trusted(
        TaskItem,
        {
            "request": request,
            "response_url": raw.get("response_url"),
            "result": outcome.get("result"),
            "error": outcome.get("error"),
        },
    )


#: The unpacking order of :func:`task_from_values`; a test pins it to :data:`ROW_COLUMNS`.
UNPACK_ORDER = (
    "id", "queue", "state", "priority", "schedule_at", "attempt_count", "max_attempts",
    "visibility_timeout", "expired_count", "retry_delay", "lease_id", "lease_expires_at",
    "worker_id", "last_error", "errors", "items", "outcomes", "name", "metadata",
    "idempotency_key", "created_at", "updated_at", "started_at", "finished_at",
    "progress", "checkpoint", "cancel_requested_at", "timeout_s", "retry_policy", "held",
    "waiting_on", "dependents", "depends_on", "memory_bytes", "cpu_share", "needs_gpu",
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


def task_from_values(row: Sequence[Any], *, lenient: bool = False) -> Task:
    """Build a task from a row in :data:`ROW_COLUMNS` order (JSON columns as text).

    A request that cannot be loaded raises :class:`PayloadError`, or with ``lenient`` (reads
    for people: status, listings) comes back as an :class:`UnloadedRequest`.
    """
    (
        task_id, queue, state, priority, schedule_at, attempt_count, max_attempts,
        visibility_timeout, expired_count, _retry_delay, lease_id, lease_expires_at,
        worker_id, last_error, errors, items, outcomes, name, metadata,
        idempotency_key, created_at, updated_at, started_at, finished_at,
        progress, checkpoint, cancel_requested_at, timeout_s, retry_policy, held,
        waiting_on, _dependents, depends_on, memory_bytes, cpu_share, needs_gpu,
    ) = row  # fmt: skip
    raw_items = _loads(items, [])
    if not isinstance(raw_items, list) or not raw_items:
        raise PayloadError(f"stored items are not a non-empty list: {raw_items!r:.200}")
    done = _loads(outcomes, [])
    return trusted(
        Task,
        {
            "id": task_id,
            "queue": queue,
            "state": _STATES[state],
            "priority": priority,
            "schedule_at": schedule_at,
            "items": [
                _item(raw, done[index] if index < len(done) else None, index, lenient=lenient)
                for index, raw in enumerate(raw_items)
            ],
            "attempt_count": attempt_count,
            "max_attempts": max_attempts,
            "visibility_timeout": visibility_timeout,
            "expired_count": expired_count,
            "lease_id": lease_id,
            "lease_expires_at": lease_expires_at,
            "worker_id": worker_id,
            "last_error": last_error,
            "errors": [AttemptError.model_construct(**e) for e in _loads(errors, [])],
            "created_at": created_at,
            "updated_at": updated_at,
            "started_at": started_at,
            "finished_at": finished_at,
            "name": name,
            "metadata": _loads(metadata, {}),
            "idempotency_key": idempotency_key,
            "timeout_s": timeout_s,
            "retry_policy": None
            if retry_policy in (None, "null")
            else _POLICY.validate_json(retry_policy),
            "held": bool(held),
            "depends_on": _loads(depends_on, []),
            "waiting_on": waiting_on,
            "progress": _progress(_loads(progress, None)),
            "checkpoint": _loads(checkpoint, None),
            "cancel_requested_at": cancel_requested_at,
            "resources": _resources(memory_bytes, cpu_share, needs_gpu),
        },
    )

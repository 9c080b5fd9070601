"""Rows become tasks, and tasks rows, here and nowhere else."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from worker import kinds
from worker.errors import UnknownRequestKindError
from worker.models import AttemptError, Task, TaskItem, UnloadedRequest
from worker.states import TaskState


class PayloadError(Exception):
    """A stored request cannot be loaded: unknown kind, or it no longer validates."""


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def items_json(items: list[TaskItem]) -> str:
    """The ``items`` column's JSON text: each item's kind name, request and outcome fields."""
    parts = []
    for item in items:
        kind = kinds.kind_of(type(item.request))
        parts.append(
            f'{{"kind":{_dumps(kind)},"request":{item.request.model_dump_json()},'
            f'"response_url":{_dumps(item.response_url)},"result":{_dumps(item.result)},'
            f'"error":{_dumps(item.error)}}}'
        )
    return f"[{','.join(parts)}]"


#: Column order of :func:`insert_values` (and of the bulk INSERT the store issues).
INSERT_COLUMNS = (
    "id",
    "queue",
    "state",
    "priority",
    "schedule_at",
    "attempt_count",
    "max_attempts",
    "visibility_timeout",
    "expired_count",
    "errors",
    "items",
    "name",
    "metadata",
    "idempotency_key",
    "created_at",
    "updated_at",
)


def insert_values(task: Task, items: str) -> tuple[Any, ...]:
    """Driver-level values for :data:`INSERT_COLUMNS` (JSON already encoded)."""
    return (
        task.id,
        task.queue,
        TaskState.PENDING.value,
        task.priority,
        task.schedule_at,
        0,
        task.max_attempts,
        task.visibility_timeout,
        0,
        "[]",
        items,
        task.name,
        _dumps(task.metadata) if task.metadata else "{}",
        task.idempotency_key,
        task.created_at,
        task.updated_at,
    )


def _request(raw: Mapping[str, Any], index: int) -> BaseModel:
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


def _item(raw: Mapping[str, Any], index: int, *, lenient: bool) -> TaskItem:
    try:
        request = _request(raw, index)
    except PayloadError as exc:
        if not lenient:
            raise
        request = UnloadedRequest(
            kind=str(raw.get("kind")), data=raw.get("request"), problem=str(exc)
        )
    return TaskItem.model_construct(
        request=request,
        response_url=raw.get("response_url"),
        result=raw.get("result"),
        error=raw.get("error"),
    )


def task_from_row(row: Mapping[Any, Any], *, lenient: bool = False) -> Task:
    """Build a task from a ``tasks`` row.

    A request that cannot be loaded raises :class:`PayloadError`, or with ``lenient`` (reads
    for people: status, listings) comes back as an :class:`UnloadedRequest`.
    """
    raw_items = row["items"]
    if not isinstance(raw_items, list) or not raw_items:
        raise PayloadError(f"stored items are not a non-empty list: {raw_items!r:.200}")
    items = [_item(raw, index, lenient=lenient) for index, raw in enumerate(raw_items)]
    errors = [AttemptError.model_construct(**entry) for entry in row["errors"] or ()]
    return Task.model_construct(
        id=row["id"],
        queue=row["queue"],
        state=TaskState(row["state"]),
        priority=row["priority"],
        schedule_at=row["schedule_at"],
        items=items,
        attempt_count=row["attempt_count"],
        max_attempts=row["max_attempts"],
        visibility_timeout=row["visibility_timeout"],
        expired_count=row["expired_count"],
        lease_id=row["lease_id"],
        lease_expires_at=row["lease_expires_at"],
        worker_id=row["worker_id"],
        last_error=row["last_error"],
        errors=errors,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        name=row["name"],
        metadata=row["metadata"] or {},
        idempotency_key=row["idempotency_key"],
    )

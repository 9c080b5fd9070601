"""Rows become tasks, and tasks rows, here and nowhere else."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from worker import kinds
from worker.errors import UnknownRequestKindError
from worker.models import AttemptError, Task, TaskItem, UnloadedRequest
from worker.states import TaskState


class PayloadError(Exception):
    """A stored request cannot be loaded: unknown kind, or it no longer validates."""


def items_to_json(items: list[TaskItem]) -> list[dict[str, Any]]:
    return [
        {
            "kind": kinds.kind_of(type(item.request)),
            "request": item.request.model_dump(mode="json"),
            "response_url": item.response_url,
            "result": item.result,
            "error": item.error,
        }
        for item in items
    ]


def insert_row(task: Task, items: list[dict[str, Any]]) -> dict[str, Any]:
    """The column values that insert ``task`` (its id and times already filled in)."""
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
        "retry_delay": None,
        "lease_id": None,
        "lease_expires_at": None,
        "worker_id": None,
        "last_error": None,
        "errors": [],
        "task_items": items,
        "name": task.name,
        "task_metadata": task.metadata,
        "idempotency_key": task.idempotency_key,
        "created_at": task.created_at,
        "updated_at": task.updated_at,
        "started_at": None,
        "finished_at": None,
    }


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

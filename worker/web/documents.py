"""Tasks as JSON documents, and tasks built from submitted JSON (validated with the
registered model of their kind before anything is written)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from worker.core import arguments
from worker.core.errors import InvalidInputError, InvalidTaskError, UnknownRequestKindError
from worker.core.kinds import kind_of, model_for
from worker.core.models import Task, TaskItem, UnloadedRequest
from worker.web.schemas import Submit


def request_kind(request: BaseModel) -> str:
    if isinstance(request, UnloadedRequest):
        return request.kind
    try:
        return kind_of(type(request))
    except UnknownRequestKindError:
        return type(request).__name__


def task_document(task: Task) -> dict[str, Any]:
    """A task as JSON: the model's fields, plus each item's request ``kind``."""
    document = task.model_dump(mode="json")
    for item, dumped in zip(task.items, document["items"], strict=True):
        dumped["kind"] = request_kind(item.request)
    return document


def kinds(task: Task) -> set[str]:
    return {request_kind(item.request) for item in task.items}


def build_task(submitted: Submit, now: float, where: str = "") -> Task:
    """The task ``submitted`` describes; a refusal names the field (``where`` prefixes it,
    ``tasks[3].`` in a batch)."""
    try:
        model = model_for(submitted.kind)
    except UnknownRequestKindError as exc:
        raise InvalidInputError(f"{where}kind: {exc}") from exc
    try:
        request = model.model_validate(submitted.request)
    except ValidationError as exc:
        raise InvalidInputError(arguments.problems(f"{where}request", exc)) from exc
    try:
        return Task(
            items=[TaskItem(request=request, response_url=submitted.response_url)],
            queue=submitted.queue,
            priority=submitted.priority,
            schedule_at=now + submitted.delay_s if submitted.delay_s else 0.0,
            max_attempts=submitted.max_attempts,
            timeout_s=submitted.timeout_s,
            name=submitted.name,
            metadata=submitted.metadata,
            depends_on=submitted.depends_on,
            idempotency_key=submitted.idempotency_key,
            retry_policy=submitted.retry_policy,
            **({} if submitted.resources is None else {"resources": submitted.resources}),
        )
    except ValidationError as exc:
        raise InvalidTaskError(arguments.problems(where.rstrip(".") or "task", exc)) from exc

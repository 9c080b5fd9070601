"""The API's request and response bodies (pydantic; FastAPI builds ``/openapi.json`` from
them). A submitted request is validated twice over: here its envelope, then its ``request``
by the model its ``kind`` names (:mod:`worker.core.kinds`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from worker.core.limits import MAX_DURATION_S
from worker.core.models import Resources, RetryPolicy
from worker.core.states import TaskState

#: The most tasks one batch submit takes.
MAX_BATCH = 1000


class Submit(BaseModel):
    """One task of one request: a registered kind's request, and the task's options."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(min_length=1, max_length=64, description="A registered request kind.")
    request: dict[str, JsonValue] = Field(description="The kind's request fields.")
    response_url: str | None = Field(None, description="Where to POST the item's result.")
    queue: str = "default"
    priority: int = 0
    delay_s: float | None = Field(
        None, ge=0, le=MAX_DURATION_S, allow_inf_nan=False, description="Run no sooner."
    )
    max_attempts: int | None = None
    timeout_s: float | None = None
    name: str | None = None
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)
    idempotency_key: str | None = None
    retry_policy: RetryPolicy | None = None
    resources: Resources | None = None


class SubmitMany(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tasks: list[Submit] = Field(min_length=1, max_length=MAX_BATCH)


class Submitted(BaseModel):
    """The seed's submit response: ``queued``, ``queue_position``, ``task_id``."""

    task_id: str
    queued: bool = Field(description="Whether the task waits to run (pending).")
    queue_position: int | None = Field(
        description="1 for next: claimable tasks of its queue ahead of it, plus one "
        "(null unless pending)."
    )
    state: TaskState


class SubmittedMany(BaseModel):
    inserted: int = Field(description="New tasks (an idempotency key may reuse a live one).")
    tasks: list[Submitted]


class TaskPage(BaseModel):
    tasks: list[dict[str, Any]]
    next_after: str | None = Field(description="Pass as ``after`` for the next page.")
    next_after_priority: int | None = Field(
        None, description="Pending tasks' pages: pass as ``after_priority`` with ``after``."
    )


class QueueStatus(BaseModel):
    """The seed's status shape. ``queued``: pending or retryable; ``failed``: discarded or
    cancelled; the five add up to ``total``."""

    queued: int
    processing: int
    completed: int
    failed: int
    total: int


class ActionDone(BaseModel):
    id: str
    state: TaskState
    cancel_pending: bool = Field(
        False, description="A running task was asked to stop; its worker ends it."
    )


class QueuePaused(BaseModel):
    queue: str
    paused: bool
    was_paused: bool | None = None


class QueueSummary(BaseModel):
    queue: str
    counts: dict[str, int]
    paused: bool
    paused_at: float | None
    oldest_pending_age_s: float | None

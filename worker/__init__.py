"""A durable asyncio task queue on SQLite."""

from worker.backoff import retry_delay_s
from worker.config import QueueConfig
from worker.errors import (
    DuplicateTaskError,
    InvalidInputError,
    InvalidStateTransitionError,
    InvalidTaskError,
    LeaseLostError,
    QueueClosedError,
    QueueError,
    StorageError,
    TaskNotFoundError,
    UnknownRequestKindError,
)
from worker.kinds import register_request_kind
from worker.models import AttemptError, Completion, Failure, Task, TaskItem, UnloadedRequest
from worker.queue import WorkerQueue
from worker.states import TERMINAL_STATES, Priority, TaskState

__all__ = [
    "TERMINAL_STATES",
    "AttemptError",
    "Completion",
    "DuplicateTaskError",
    "Failure",
    "InvalidInputError",
    "InvalidStateTransitionError",
    "InvalidTaskError",
    "LeaseLostError",
    "Priority",
    "QueueClosedError",
    "QueueConfig",
    "QueueError",
    "StorageError",
    "Task",
    "TaskItem",
    "TaskNotFoundError",
    "TaskState",
    "UnknownRequestKindError",
    "UnloadedRequest",
    "WorkerQueue",
    "register_request_kind",
    "retry_delay_s",
]

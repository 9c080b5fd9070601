"""A durable asyncio task queue on SQLite."""

from worker.backoff import retry_delay_s
from worker.builtins.requests import CallRequest, CommandRequest
from worker.config import QueueConfig
from worker.context import TaskContext
from worker.control import Heartbeat
from worker.errors import (
    DatabaseLostError,
    DuplicateTaskError,
    InvalidInputError,
    InvalidStateTransitionError,
    InvalidTaskError,
    LeaseLostError,
    QueueClosedError,
    QueueError,
    SchemaMismatchError,
    StorageError,
    TaskNotFoundError,
    UnknownRequestKindError,
)
from worker.events import TaskEvent
from worker.kinds import register_request_kind
from worker.models import (
    AttemptError,
    Completion,
    Failure,
    Progress,
    Resources,
    RetryPolicy,
    Task,
    TaskItem,
    UnloadedRequest,
)
from worker.outcomes import PermanentError, Retry
from worker.processors import ProcessorRegistry, processor
from worker.queue import WorkerQueue
from worker.runtime import Worker, run_workers, worker_loop
from worker.states import TERMINAL_STATES, Priority, TaskState
from worker.sweeper import retry_sweeper

__all__ = [
    "TERMINAL_STATES",
    "AttemptError",
    "CallRequest",
    "CommandRequest",
    "Completion",
    "DatabaseLostError",
    "DuplicateTaskError",
    "Failure",
    "Heartbeat",
    "InvalidInputError",
    "InvalidStateTransitionError",
    "InvalidTaskError",
    "LeaseLostError",
    "PermanentError",
    "Priority",
    "ProcessorRegistry",
    "Progress",
    "QueueClosedError",
    "QueueConfig",
    "QueueError",
    "Resources",
    "Retry",
    "RetryPolicy",
    "SchemaMismatchError",
    "StorageError",
    "Task",
    "TaskContext",
    "TaskEvent",
    "TaskItem",
    "TaskNotFoundError",
    "TaskState",
    "UnknownRequestKindError",
    "UnloadedRequest",
    "Worker",
    "WorkerQueue",
    "processor",
    "register_request_kind",
    "retry_delay_s",
    "retry_sweeper",
    "run_workers",
    "worker_loop",
]

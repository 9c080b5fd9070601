"""A durable asyncio task queue on SQLite.

The names below load on first use (PEP 562), so ``import worker`` (and ``wq --help``) does
not pay for SQLAlchemy, Alembic or the runtime until something needs them.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.backoff import retry_delay_s
    from worker.builtins.requests import CallRequest, CommandRequest
    from worker.config import QueueConfig
    from worker.context import TaskContext
    from worker.control import Heartbeat
    from worker.errors import (
        ConfigurationError,
        DatabaseLostError,
        DatabaseNotFoundError,
        DuplicateTaskError,
        InvalidInputError,
        InvalidStateTransitionError,
        InvalidTaskError,
        LeaseLostError,
        QueueClosedError,
        QueueError,
        SchemaMismatchError,
        SchemaOutdatedError,
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

#: The module each public name lives in.
_MODULES = {
    "retry_delay_s": "worker.backoff",
    "CallRequest": "worker.builtins.requests",
    "CommandRequest": "worker.builtins.requests",
    "QueueConfig": "worker.config",
    "TaskContext": "worker.context",
    "Heartbeat": "worker.control",
    "ConfigurationError": "worker.errors",
    "DatabaseLostError": "worker.errors",
    "DatabaseNotFoundError": "worker.errors",
    "DuplicateTaskError": "worker.errors",
    "InvalidInputError": "worker.errors",
    "InvalidStateTransitionError": "worker.errors",
    "InvalidTaskError": "worker.errors",
    "LeaseLostError": "worker.errors",
    "QueueClosedError": "worker.errors",
    "QueueError": "worker.errors",
    "SchemaMismatchError": "worker.errors",
    "SchemaOutdatedError": "worker.errors",
    "StorageError": "worker.errors",
    "TaskNotFoundError": "worker.errors",
    "UnknownRequestKindError": "worker.errors",
    "TaskEvent": "worker.events",
    "register_request_kind": "worker.kinds",
    "AttemptError": "worker.models",
    "Completion": "worker.models",
    "Failure": "worker.models",
    "Progress": "worker.models",
    "Resources": "worker.models",
    "RetryPolicy": "worker.models",
    "Task": "worker.models",
    "TaskItem": "worker.models",
    "UnloadedRequest": "worker.models",
    "PermanentError": "worker.outcomes",
    "Retry": "worker.outcomes",
    "ProcessorRegistry": "worker.processors",
    "processor": "worker.processors",
    "WorkerQueue": "worker.queue",
    "Worker": "worker.runtime",
    "run_workers": "worker.runtime",
    "worker_loop": "worker.runtime",
    "TERMINAL_STATES": "worker.states",
    "Priority": "worker.states",
    "TaskState": "worker.states",
    "retry_sweeper": "worker.sweeper",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'worker' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # the next lookup is a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "TERMINAL_STATES",
    "AttemptError",
    "CallRequest",
    "CommandRequest",
    "Completion",
    "ConfigurationError",
    "DatabaseLostError",
    "DatabaseNotFoundError",
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
    "SchemaOutdatedError",
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

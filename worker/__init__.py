"""A durable asyncio task queue on SQLite.

The names below load on first use (PEP 562), so ``import worker`` (and ``wq --help``) does
not pay for SQLAlchemy, Alembic or the runtime until something needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker.core.lazy import lazy_getattr

if TYPE_CHECKING:
    from worker.builtins.requests import CallRequest, CommandRequest
    from worker.core.backoff import retry_delay_s
    from worker.core.callbacks import CallbackState, TaskCallback
    from worker.core.config import QueueConfig
    from worker.core.errors import (
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
        QueueFullError,
        ScheduleNotFoundError,
        SchemaMismatchError,
        SchemaOutdatedError,
        StorageError,
        TaskNotFoundError,
        UnknownRequestKindError,
    )
    from worker.core.kinds import register_request_kind
    from worker.core.models import (
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
    from worker.core.schedules import Schedule, ScheduleTaskOptions, ScheduleTiming
    from worker.core.states import TERMINAL_STATES, Priority, TaskState
    from worker.queue.submission import SubmitOptions, TaskOptions
    from worker.queue.sync_client import SyncQueue
    from worker.queue.worker_queue import WorkerQueue
    from worker.runtime.context import TaskContext
    from worker.runtime.events import TaskEvent
    from worker.runtime.outcomes import PermanentError, Retry
    from worker.runtime.processors import ProcessorRegistry, processor
    from worker.runtime.sweeper import retry_sweeper
    from worker.runtime.task_functions import (
        ConfiguredTask,
        Jobs,
        TaskFunction,
        default_jobs,
        task,
    )
    from worker.runtime.threads import Interrupted, in_thread
    from worker.runtime.workers import Worker, run_workers, worker_loop
    from worker.storage.control import Heartbeat

#: The module each public name lives in.
_MODULES = {
    "retry_delay_s": "worker.core.backoff",
    "CallRequest": "worker.builtins.requests",
    "CallbackState": "worker.core.callbacks",
    "TaskCallback": "worker.core.callbacks",
    "CommandRequest": "worker.builtins.requests",
    "QueueConfig": "worker.core.config",
    "TaskContext": "worker.runtime.context",
    "Heartbeat": "worker.storage.control",
    "ConfigurationError": "worker.core.errors",
    "DatabaseLostError": "worker.core.errors",
    "DatabaseNotFoundError": "worker.core.errors",
    "DuplicateTaskError": "worker.core.errors",
    "InvalidInputError": "worker.core.errors",
    "InvalidStateTransitionError": "worker.core.errors",
    "InvalidTaskError": "worker.core.errors",
    "LeaseLostError": "worker.core.errors",
    "QueueClosedError": "worker.core.errors",
    "QueueError": "worker.core.errors",
    "QueueFullError": "worker.core.errors",
    "ScheduleNotFoundError": "worker.core.errors",
    "SchemaMismatchError": "worker.core.errors",
    "SchemaOutdatedError": "worker.core.errors",
    "StorageError": "worker.core.errors",
    "TaskNotFoundError": "worker.core.errors",
    "UnknownRequestKindError": "worker.core.errors",
    "TaskEvent": "worker.runtime.events",
    "register_request_kind": "worker.core.kinds",
    "AttemptError": "worker.core.models",
    "Completion": "worker.core.models",
    "Failure": "worker.core.models",
    "Progress": "worker.core.models",
    "Resources": "worker.core.models",
    "RetryPolicy": "worker.core.models",
    "Task": "worker.core.models",
    "TaskItem": "worker.core.models",
    "UnloadedRequest": "worker.core.models",
    "PermanentError": "worker.runtime.outcomes",
    "Retry": "worker.runtime.outcomes",
    "ProcessorRegistry": "worker.runtime.processors",
    "processor": "worker.runtime.processors",
    "WorkerQueue": "worker.queue.worker_queue",
    "SubmitOptions": "worker.queue.submission",
    "TaskOptions": "worker.queue.submission",
    "SyncQueue": "worker.queue.sync_client",
    "ConfiguredTask": "worker.runtime.task_functions",
    "Jobs": "worker.runtime.task_functions",
    "TaskFunction": "worker.runtime.task_functions",
    "default_jobs": "worker.runtime.task_functions",
    "task": "worker.runtime.task_functions",
    "Interrupted": "worker.runtime.threads",
    "in_thread": "worker.runtime.threads",
    "Worker": "worker.runtime.workers",
    "run_workers": "worker.runtime.workers",
    "worker_loop": "worker.runtime.workers",
    "Schedule": "worker.core.schedules",
    "ScheduleTaskOptions": "worker.core.schedules",
    "ScheduleTiming": "worker.core.schedules",
    "TERMINAL_STATES": "worker.core.states",
    "Priority": "worker.core.states",
    "TaskState": "worker.core.states",
    "retry_sweeper": "worker.runtime.sweeper",
}


__getattr__ = lazy_getattr(__name__, _MODULES)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "TERMINAL_STATES",
    "AttemptError",
    "CallRequest",
    "CallbackState",
    "CommandRequest",
    "Completion",
    "ConfigurationError",
    "ConfiguredTask",
    "DatabaseLostError",
    "DatabaseNotFoundError",
    "DuplicateTaskError",
    "Failure",
    "Heartbeat",
    "Interrupted",
    "InvalidInputError",
    "InvalidStateTransitionError",
    "InvalidTaskError",
    "Jobs",
    "LeaseLostError",
    "PermanentError",
    "Priority",
    "ProcessorRegistry",
    "Progress",
    "QueueClosedError",
    "QueueConfig",
    "QueueError",
    "QueueFullError",
    "Resources",
    "Retry",
    "RetryPolicy",
    "Schedule",
    "ScheduleNotFoundError",
    "ScheduleTaskOptions",
    "ScheduleTiming",
    "SchemaMismatchError",
    "SchemaOutdatedError",
    "StorageError",
    "SubmitOptions",
    "SyncQueue",
    "Task",
    "TaskCallback",
    "TaskContext",
    "TaskEvent",
    "TaskFunction",
    "TaskItem",
    "TaskNotFoundError",
    "TaskOptions",
    "TaskState",
    "UnknownRequestKindError",
    "UnloadedRequest",
    "Worker",
    "WorkerQueue",
    "default_jobs",
    "in_thread",
    "processor",
    "register_request_kind",
    "retry_delay_s",
    "retry_sweeper",
    "run_workers",
    "task",
    "worker_loop",
]

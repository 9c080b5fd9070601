"""``WorkerQueueBackend``: Django's task framework (``django.tasks``) on this queue.

A Django task enqueued through it is a task of the ``django_task`` request kind
(:class:`~worker.integrations.django.requests.DjangoTaskRequest`: the task's module path and
its JSON arguments), written through a :class:`~worker.queue.sync_client.SyncQueue` (one per
database and process, shared by every thread); ``wq worker`` runs it
(:mod:`worker.integrations.django.processor`), and :meth:`WorkerQueueBackend.get_result`
reads it back as Django's ``TaskResult``:

=============================  ==============================================================
Django                         this queue
=============================  ==============================================================
``TaskResult.id``              the task's id (a ULID)
``priority`` (-100..100)       the task's priority, as it is (higher runs first in both;
                               ``Priority.HIGH`` is 10)
``queue_name``                 the task's queue (``wq worker --queue NAME`` serves it)
``run_after``                  ``schedule_at``
``READY``                      pending, or retryable (waiting for its next attempt)
``RUNNING``                    processing
``SUCCESSFUL``                 completed; ``return_value`` is the item's result
``FAILED``                     discarded (``errors`` holds each attempt's), or cancelled
                               (the last error is a :class:`TaskCancelled`)
=============================  ==============================================================

``OPTIONS``: ``max_attempts`` (default 1: a Django task runs once, and fails if it raises, as
with Django's own backends), ``timeout_s`` (per attempt; default ``QUEUE_WORKER_TIMEOUT``),
and any :class:`~worker.core.config.QueueConfig` field (``database_url``, ``busy_timeout``,
...); with none of those, the queue's settings come from the ``QUEUE_*`` variables.
"""

from __future__ import annotations

import os
import re
import threading
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from django.utils.module_loading import import_string
from pydantic import ValidationError

from worker.core.config import QueueConfig
from worker.core.errors import (
    ConfigurationError,
    InvalidInputError,
    TaskNotFoundError,
)
from worker.core.limits import MAX_ATTEMPTS, MAX_DURATION_S
from worker.core.models import Task as QueueTask
from worker.core.states import TaskState
from worker.integrations.django.compat import (
    BaseTaskBackend,
    InvalidTask,
    Task,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    normalize_json,
    task_enqueued,
)
from worker.integrations.django.requests import DjangoTaskRequest
from worker.queue.sync_client import SyncQueue


class TaskCancelled(Exception):
    """The error a cancelled task's ``TaskResult`` shows: it was cancelled (``wq cancel``,
    the HTTP API) before it finished."""


class TaskInterrupted(Exception):
    """The error of an attempt that ended without an exception of the task function: it ran
    out of time, or its worker was lost (the traceback is the queue's message)."""


class DjangoTaskFailed(Exception):
    """What the worker raises when a Django task function raised: the queue stores it as
    ``DjangoTaskFailed: package.module.Error`` and, on the next lines, the traceback, which
    :meth:`WorkerQueueBackend.get_result` turns back into Django's ``TaskError``."""

    def __init__(self, exception_class_path: str, traceback: str) -> None:
        super().__init__(f"{exception_class_path}\n{traceback}")
        self.exception_class_path = exception_class_path
        self.traceback = traceback


FAILED_PREFIX = f"{DjangoTaskFailed.__name__}: "
_RAISED = re.compile(re.escape(FAILED_PREFIX) + r"(?P<path>[\w.]+)\n(?P<traceback>.*)", re.DOTALL)
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")

_STATUS = {
    TaskState.PENDING: TaskResultStatus.READY,
    TaskState.RETRYABLE: TaskResultStatus.READY,
    TaskState.PROCESSING: TaskResultStatus.RUNNING,
    TaskState.COMPLETED: TaskResultStatus.SUCCESSFUL,
    TaskState.DISCARDED: TaskResultStatus.FAILED,
    TaskState.CANCELLED: TaskResultStatus.FAILED,
}

#: The backend's own options; the others are QueueConfig's fields.
_TASK_OPTIONS = frozenset({"max_attempts", "timeout_s"})


class WorkerQueueBackend(BaseTaskBackend):
    """Django's ``TASKS`` backend on this queue (see the module docstring)."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        options = dict(self.options)
        self.max_attempts: int = _whole(options.pop("max_attempts", 1), alias, "max_attempts")
        timeout = options.pop("timeout_s", None)
        self.timeout_s: float | None = None if timeout is None else _seconds(timeout, alias)
        self.config = _config(options, alias)

    # -- validation ----------------------------------------------------------------------

    def validate_task(self, task: Task[..., Any]) -> None:
        """Django's checks, and that the queue can store the task's queue name."""
        super().validate_task(task)
        if not _QUEUE_NAME.match(task.queue_name):
            raise InvalidTask(
                f"Queue name {task.queue_name!r} cannot be a queue's: use 1 to 64 letters, "
                "digits, '_', '.', ':' or '-'."
            )

    # -- enqueueing ----------------------------------------------------------------------

    def enqueue(self, task: Task[Any, Any], args: Any, kwargs: Any) -> TaskResult[Any, Any]:
        """Write the task to the queue; its ``TaskResult`` is READY."""
        request, options = self._submission(task, args, kwargs)
        stored = self.queue.submit(request, **options)
        result = self._result(stored, task, request)
        task_enqueued.send(type(self), task_result=result)
        return result

    async def aenqueue(self, task: Task[Any, Any], args: Any, kwargs: Any) -> TaskResult[Any, Any]:
        """:meth:`enqueue` without blocking the caller's event loop (no thread of Django's:
        the queue's own loop does the writing)."""
        request, options = self._submission(task, args, kwargs)
        stored = await self.queue.call_async(lambda q: q.submit(request, **options))
        result = self._result(stored, task, request)
        await task_enqueued.asend(type(self), task_result=result)
        return result

    def _submission(
        self, task: Task[Any, Any], args: Any, kwargs: Any
    ) -> tuple[DjangoTaskRequest, dict[str, Any]]:
        self.validate_task(task)
        try:
            values, named = normalize_json(list(args)), normalize_json(dict(kwargs))
        except (TypeError, ValueError) as exc:  # TypeError, as Django's own backends raise
            raise TypeError(
                f"Task {task.module_path}: its arguments must have a JSON form: {exc}"
            ) from exc
        try:
            request = DjangoTaskRequest(
                module_path=task.module_path,
                args=values,
                kwargs=named,
                backend=self.alias,
                takes_context=task.takes_context,
            )
        except ValidationError as exc:
            raise InvalidTask(f"Task {task.module_path}: {exc.errors()[0]['msg']}") from exc
        options: dict[str, Any] = {
            "queue": task.queue_name,
            "priority": task.priority,
            "max_attempts": self.max_attempts,
            "name": task.name,
        }
        if self.timeout_s is not None:
            options["timeout_s"] = self.timeout_s
        if task.run_after is not None:
            options["schedule_at"] = _aware(task.run_after).timestamp()
        return request, options

    # -- results -------------------------------------------------------------------------

    def get_result(self, result_id: str) -> TaskResult[Any, Any]:
        """The task's ``TaskResult`` as it is now; ``TaskResultDoesNotExist`` if there is no
        such task, or it is no Django task."""
        try:
            stored = self.queue.get_task(result_id)
        except (TaskNotFoundError, InvalidInputError):
            raise TaskResultDoesNotExist(result_id) from None
        return self.result_of(stored)

    async def aget_result(self, result_id: str) -> TaskResult[Any, Any]:
        """:meth:`get_result` without blocking the caller's event loop."""
        try:
            stored = await self.queue.call_async(lambda q: q.get_task(result_id))
        except (TaskNotFoundError, InvalidInputError):
            raise TaskResultDoesNotExist(result_id) from None
        return self.result_of(stored)

    def result_of(self, stored: QueueTask) -> TaskResult[Any, Any]:
        """A stored task as Django's ``TaskResult`` (its task function imported by path)."""
        request = stored.items[0].request if stored.items else None
        if not isinstance(request, DjangoTaskRequest):
            raise TaskResultDoesNotExist(stored.id)
        task = django_task(request.module_path, request.takes_context)
        changes: dict[str, Any] = {
            "priority": max(-100, min(100, stored.priority)),
            "queue_name": stored.queue,
            "backend": self.alias,
        }
        if stored.schedule_at > stored.created_at:
            changes["run_after"] = _local(stored.schedule_at)
        return self._result(stored, task.using(**changes), request)

    def _result(
        self, stored: QueueTask, task: Task[Any, Any], request: DjangoTaskRequest
    ) -> TaskResult[Any, Any]:
        status = _STATUS[stored.state]
        errors = [_error(attempt.error) for attempt in stored.errors]
        if stored.state is TaskState.CANCELLED:
            errors.append(
                TaskError(
                    exception_class_path=f"{__name__}.{TaskCancelled.__qualname__}",
                    traceback=f"{__name__}.TaskCancelled: {stored.last_error or 'cancelled'}\n",
                )
            )
        started = _local(stored.started_at)
        result: TaskResult[Any, Any] = TaskResult(
            task=task,
            id=stored.id,
            status=status,
            enqueued_at=_local(stored.created_at),
            started_at=started,
            finished_at=_local(stored.finished_at) if status in _FINISHED else None,
            last_attempted_at=started,
            args=list(request.args),
            kwargs=dict(request.kwargs),
            backend=self.alias,
            errors=errors,
            # One per attempt; the queue keeps the latest attempt's worker only.
            worker_ids=[stored.worker_id or ""] * stored.attempt_count,
        )
        if status is TaskResultStatus.SUCCESSFUL:
            object.__setattr__(result, "_return_value", stored.items[0].result)
        return result

    # -- the queue -----------------------------------------------------------------------

    @property
    def queue(self) -> SyncQueue:
        """The process's client of this backend's database (opened on first use)."""
        return _client(self.config)


_FINISHED = frozenset({TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED})


def django_task(module_path: str, takes_context: bool = False) -> Task[Any, Any]:
    """The Django ``Task`` at ``module_path`` (a ``@task`` function's module attribute).
    Raises ``InvalidTask`` naming the path when it names none."""
    try:
        found = import_string(module_path)
    except ImportError as exc:
        raise InvalidTask(f"Task {module_path!r} cannot be imported: {exc}") from exc
    if isinstance(found, Task):
        return found
    raise InvalidTask(
        f"{module_path!r} is not a Task (a function decorated with @task), "
        f"got {type(found).__name__}"
    )


def _error(text: str) -> TaskError:
    """An attempt's stored error as Django's ``TaskError``."""
    raised = _RAISED.match(text)
    if raised:
        return TaskError(exception_class_path=raised["path"], traceback=raised["traceback"])
    return TaskError(
        exception_class_path=f"{__name__}.{TaskInterrupted.__qualname__}",
        traceback=f"{__name__}.TaskInterrupted: {text}\n",
    )


def _aware(moment: datetime) -> datetime:
    """``run_after`` as an aware datetime (a naive one is in Django's ``TIME_ZONE``)."""
    if timezone.is_aware(moment):
        return moment
    return timezone.make_aware(moment, timezone.get_default_timezone())


def _local(instant: float | None) -> datetime | None:
    """An instant as Django's datetimes are: aware in UTC with ``USE_TZ``, else naive in
    ``TIME_ZONE``."""
    if instant is None:
        return None
    moment = datetime.fromtimestamp(instant, tz=UTC)
    if settings.USE_TZ:
        return moment
    return timezone.make_naive(moment, timezone.get_default_timezone())


def _whole(value: Any, alias: str, name: str) -> int:
    if type(value) is not int or not 1 <= value <= MAX_ATTEMPTS:
        raise ImproperlyConfigured(
            f"TASKS[{alias!r}]['OPTIONS'][{name!r}]: a whole number from 1 to {MAX_ATTEMPTS}, "
            f"got {value!r}"
        )
    return value


def _seconds(value: Any, alias: str) -> float:
    if type(value) not in (int, float) or not 0 < value <= MAX_DURATION_S:
        raise ImproperlyConfigured(
            f"TASKS[{alias!r}]['OPTIONS']['timeout_s']: seconds above 0, at most a year, "
            f"got {value!r}"
        )
    return float(value)


def _config(options: dict[str, Any], alias: str) -> QueueConfig:
    """The queue's settings: the OPTIONS that are QueueConfig fields, else the environment."""
    unknown = sorted(set(options) - set(QueueConfig.model_fields))
    if unknown:
        raise ImproperlyConfigured(
            f"TASKS[{alias!r}]['OPTIONS']: unknown option{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))} (options: {', '.join(sorted(_TASK_OPTIONS))}, "
            "and the fields of worker.QueueConfig such as 'database_url')"
        )
    try:
        return QueueConfig(**options) if options else QueueConfig.from_env()
    except ConfigurationError as exc:
        raise ImproperlyConfigured(f"TASKS[{alias!r}]['OPTIONS']: {exc}") from None


# -- one client per database and process -------------------------------------------------

_clients: dict[str, tuple[int, SyncQueue]] = {}
_clients_lock = threading.Lock()


def _client(config: QueueConfig) -> SyncQueue:
    """The shared client of ``config`` (Django makes a backend per thread; they share one
    queue). A client made before a fork is not used after it: the child makes its own."""
    key = config.model_dump_json()
    with _clients_lock:
        found = _clients.get(key)
        if found is not None and found[0] == os.getpid():
            return found[1]
        client = SyncQueue(config)
        _clients[key] = (os.getpid(), client)
        return client


def close_queues() -> None:
    """Close this process's clients (tests; a program that wants its connections closed
    before it exits). The next use opens them again."""
    with _clients_lock:
        clients = [client for pid, client in _clients.values() if pid == os.getpid()]
        _clients.clear()
    for client in clients:
        client.close()

"""The ``django_task`` processor: run a Django task function in ``wq worker``.

The worker sets Django up on the first such task (``django.setup()``, with the settings of
``DJANGO_SETTINGS_MODULE``), imports the task by its module path and calls its function with
the stored arguments: a plain ``def`` in a thread (with Django's stale database connections
closed before and after, as a request does), an ``async def`` on the worker's loop. It sends
Django's ``task_started`` and ``task_finished`` signals; the return value (made JSON as
Django's backends make it) is stored as the task's result, and an exception fails the
attempt with its class path and traceback (:class:`~worker.integrations.django.backend.
DjangoTaskFailed`), retried while ``max_attempts`` allows.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import threading
import traceback
from typing import Any

import django
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import close_old_connections
from django.utils import timezone
from pydantic import JsonValue

from worker.core.models import TaskItem
from worker.integrations.django.backend import DjangoTaskFailed, WorkerQueueBackend
from worker.integrations.django.compat import (
    InvalidTask,
    TaskError,
    TaskResult,
    TaskResultStatus,
    normalize_json,
    task_backends,
    task_finished,
    task_started,
)
from worker.integrations.django.compat import TaskContext as DjangoContext
from worker.integrations.django.requests import DjangoTaskRequest
from worker.runtime.context import TaskContext
from worker.runtime.outcomes import PermanentError
from worker.runtime.threads import in_thread

log = logging.getLogger(__name__)

_setup_lock = threading.Lock()


def setup_django() -> None:
    """``django.setup()`` once per process, or a :class:`PermanentError` saying what is
    missing (the settings module, an app that does not import)."""
    with _setup_lock:
        if apps.ready:
            return
        if not settings.configured and not os.environ.get("DJANGO_SETTINGS_MODULE"):
            raise PermanentError(
                "a django_task needs the project's settings: start the worker with "
                "DJANGO_SETTINGS_MODULE set (e.g. DJANGO_SETTINGS_MODULE=mysite.settings wq worker)"
            )
        try:
            django.setup()
        except Exception as exc:
            raise PermanentError(
                f"Django could not be set up: {type(exc).__name__}: {exc}"
            ) from exc
        log.info("Django set up for django_task (settings %s)", settings.SETTINGS_MODULE)


async def run_django_task(item: TaskItem, ctx: TaskContext) -> JsonValue:
    """Run one ``django_task`` item (see the module docstring)."""
    request = item.request
    if not isinstance(request, DjangoTaskRequest):
        raise PermanentError(f"the django_task processor got a {type(request).__name__}")
    if not apps.ready:
        await asyncio.to_thread(setup_django)
    try:
        backend = task_backends[request.backend]
        if not isinstance(backend, WorkerQueueBackend):
            raise PermanentError(
                f"TASKS[{request.backend!r}] in this worker's settings is a "
                f"{type(backend).__name__}, not the WorkerQueueBackend the task was enqueued "
                "through"
            )
        run = _Run(backend.result_of(ctx.task), request, type(backend))
    except (InvalidTask, ImproperlyConfigured) as exc:
        raise PermanentError(str(exc)) from exc
    if inspect.iscoroutinefunction(run.function):
        return await run.coroutine()
    return await in_thread(run.in_thread)


class _Run:
    """One call of a Django task function, with its ``TaskResult`` and signals."""

    def __init__(
        self, result: TaskResult[Any, Any], request: DjangoTaskRequest, sender: type[Any]
    ) -> None:
        self.result = result
        self.sender = sender
        self.function = result.task.func
        self.args: list[Any] = list(request.args)
        if request.takes_context:
            self.args.insert(0, DjangoContext(task_result=result))
        self.kwargs: dict[str, Any] = dict(request.kwargs)

    async def coroutine(self) -> JsonValue:
        """An ``async def`` task on the worker's loop (signals sent with ``asend``)."""
        await task_started.asend(self.sender, task_result=self.result)
        try:
            value = normalize_json(await self.function(*self.args, **self.kwargs))
        except Exception as exc:
            failure = self.failed(exc)
            await task_finished.asend(self.sender, task_result=self.result)
            raise failure from exc
        self.finished(TaskResultStatus.SUCCESSFUL, value)
        await task_finished.asend(self.sender, task_result=self.result)
        return value

    def in_thread(self) -> JsonValue:
        """A plain ``def`` task, in a thread, as Django's ImmediateBackend runs one."""
        close_old_connections()
        try:
            task_started.send(self.sender, task_result=self.result)
            try:
                value = normalize_json(self.function(*self.args, **self.kwargs))
            except Exception as exc:
                failure = self.failed(exc)
                # sent inside the handler: receivers see the exception in sys.exc_info()
                task_finished.send(self.sender, task_result=self.result)
                raise failure from exc
            self.finished(TaskResultStatus.SUCCESSFUL, value)
            task_finished.send(self.sender, task_result=self.result)
            return value
        finally:
            close_old_connections()

    def finished(self, status: TaskResultStatus, value: Any = None) -> None:
        object.__setattr__(self.result, "status", status)
        object.__setattr__(self.result, "finished_at", timezone.now())
        object.__setattr__(self.result, "_return_value", value)

    def failed(self, exc: Exception) -> DjangoTaskFailed:
        kind = type(exc)
        error = TaskError(
            exception_class_path=f"{kind.__module__}.{kind.__qualname__}",
            traceback="".join(traceback.format_exception(exc)),
        )
        self.result.errors.append(error)
        self.finished(TaskResultStatus.FAILED)
        return DjangoTaskFailed(error.exception_class_path, error.traceback)

"""Task functions: one decorator makes a function a kind of task, and ``defer`` enqueues it.

::

    jobs = Jobs()                               # or Jobs(queue): where defer() enqueues

    @jobs.task(queue="mail", priority=Priority.HIGH, retry=RetryPolicy(kind="fixed", delay_s=30))
    async def send_welcome(to: str, name: str = "there") -> dict[str, str]:
        ...                                     # runs in a worker (a plain def: in a thread)

    jobs.bind(queue)                            # a WorkerQueue, or a SyncQueue
    task = await send_welcome.defer(to="ada@example.com")       # validated here, enqueued
    await send_welcome.configure(delay=60).defer(to="bob@example.com")
    send_welcome.configure(priority=0).defer_sync(to="eve@example.com")  # SyncQueue, threads

The decorator registers a request kind named after the function (``package.module.name``,
or ``name=``) whose model has a field per parameter (:mod:`worker.runtime.signatures`), and a
processor on the jobs' :class:`~worker.runtime.processors.ProcessorRegistry` (the default one
``wq worker`` uses: ``wq worker --processors package.module`` imports the module, which
registers its functions) that calls the function with the stored arguments, and the
:class:`~worker.runtime.context.TaskContext` in the parameter annotated with it. The function
stays a function: calling it runs it here and now.

Options (:class:`~worker.queue.submission.SubmitOptions`) go to ``configure(...)``, not among
the function's arguments: the function's parameters are the user's to name (one called
``delay`` or ``queue`` is fine), and a configured function can be kept and reused
(``urgent = send_welcome.configure(priority=Priority.CRITICAL)``), as procrastinate's
``configure(...).defer(...)`` does. Its options override the decorator's.

Where ``defer`` enqueues: the jobs' bound queue, else, inside a running task function, the
queue of the worker running it; else it raises :class:`~worker.core.errors.QueueClosedError`.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, Self, TypeVar, Unpack, overload

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python

from worker.core import arguments, kinds
from worker.core.errors import InvalidInputError, QueueClosedError
from worker.core.garbage import paused_collection
from worker.core.models import RetryPolicy, Task, TaskItem
from worker.queue.submission import SubmitOptions, TaskOptions, check_options, template
from worker.queue.sync_client import SyncQueue
from worker.queue.worker_queue import WorkerQueue
from worker.runtime.context import TaskContext
from worker.runtime.outcomes import PermanentError
from worker.runtime.processors import ProcessorRegistry
from worker.runtime.processors import registry as default_registry
from worker.runtime.signatures import (
    Arguments,
    SignatureError,
    arguments_model,
    qualified_name,
)
from worker.runtime.threads import in_thread

P = ParamSpec("P")
R = TypeVar("R")

#: The queue (and its loop) of the task function running in this context, for ``defer``.
_running: contextvars.ContextVar[tuple[WorkerQueue, asyncio.AbstractEventLoop]] = (
    contextvars.ContextVar("worker_running_task_queue")
)
_JSON_SCALARS = frozenset({type(None), bool, int, float, str})


class Jobs:
    """A set of task functions and the queue they are deferred to (see the module docstring).

    ``queue``: a :class:`WorkerQueue` (``await defer(...)`` on its loop) or a
    :class:`SyncQueue` (``defer_sync(...)`` from any thread, and ``await defer(...)`` from any
    loop); or none yet: :meth:`bind` one later. ``registry``: where the processors go (the
    default registry, which workers use unless given another).
    """

    def __init__(
        self,
        queue: WorkerQueue | SyncQueue | None = None,
        *,
        registry: ProcessorRegistry | None = None,
    ) -> None:
        self._queue = queue
        self.registry = registry if registry is not None else default_registry
        self._functions: dict[str, TaskFunction[Any, Any]] = {}

    def bind(self, queue: WorkerQueue | SyncQueue | None) -> Self:
        """Defer to ``queue`` from now on (None: to nothing, or the running task's)."""
        self._queue = queue
        return self

    @property
    def queue(self) -> WorkerQueue | SyncQueue | None:
        return self._queue

    @property
    def functions(self) -> Mapping[str, TaskFunction[Any, Any]]:
        """The task functions decorated here, by kind name."""
        return dict(self._functions)

    @overload
    def task(self, function: Callable[P, R], /) -> TaskFunction[P, R]: ...

    @overload
    def task(
        self,
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        **options: Unpack[TaskOptions],
    ) -> Callable[[Callable[P, R]], TaskFunction[P, R]]: ...

    def task(  # type: ignore[misc]  # mypy: an Unpack[TypedDict] overload vs **Any
        self,
        function: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        **options: Any,
    ) -> TaskFunction[P, R] | Callable[[Callable[P, R]], TaskFunction[P, R]]:
        """Decorator (``@jobs.task`` or ``@jobs.task(...)``): make ``function`` a task
        function. ``name``: its kind (default ``package.module.function``); ``retry`` is the
        ``retry_policy`` option; the options (``queue``, ``priority``, ``timeout_s``,
        ``max_attempts``, ... : :class:`~worker.queue.submission.TaskOptions`) are the
        defaults of every ``defer``. A signature the queue cannot store, or a bad option,
        is refused here."""
        chosen: dict[str, Any] = dict(options)
        if retry is not None:
            chosen["retry_policy"] = retry

        def decorate(target: Callable[P, R]) -> TaskFunction[P, R]:
            kind = name or qualified_name(target)
            if name is None and "<locals>" in kind:
                raise SignatureError(
                    f"task function {kind}: a function defined inside another has no name a "
                    "worker can import it by; define it at module level, or give name="
                )
            made = TaskFunction(self, target, kind, chosen)
            self._functions[made.name] = made
            return made

        return decorate if function is None else decorate(function)

    def _target(self) -> WorkerQueue | SyncQueue:
        if self._queue is not None:
            return self._queue
        running = _running.get(None)
        if running is not None:
            return running[0]
        raise QueueClosedError(
            "no queue to defer to: create Jobs(queue) or call jobs.bind(queue) first "
            "(inside a running task function, the worker's queue is used)"
        )


@dataclass(frozen=True, slots=True)
class _Call:
    """One function's options and where to enqueue: what :meth:`TaskFunction.defer` and a
    configured function share."""

    function: TaskFunction[Any, Any]
    options: Mapping[str, Any]

    async def defer(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Task:
        request = self.function.arguments_of(args, kwargs)
        target = self.function.jobs._target()
        options = dict(self.options)
        if isinstance(target, SyncQueue):
            return await target.call_async(lambda q: q.submit(request, **options))
        return await target.submit(request, **options)

    async def defer_many(self, calls: Sequence[Mapping[str, Any]]) -> list[Task]:
        requests = self.function.arguments_of_many(calls)
        target = self.function.jobs._target()
        options = dict(self.options)
        if isinstance(target, SyncQueue):
            return await target.call_async(lambda q: q.submit_many(requests, **options))
        return await target.submit_many(requests, **options)

    def defer_sync(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Task:
        request = self.function.arguments_of(args, kwargs)
        options = dict(self.options)
        target = self.function.jobs._target()
        if isinstance(target, SyncQueue):
            return target.submit(request, **options)
        running = _running.get(None)
        if running is not None and running[0] is target:  # a sync task function's thread
            if _loop_here() is running[1]:
                raise RuntimeError(f"{self.function.name}.defer_sync in async code: await defer()")
            submitted = asyncio.run_coroutine_threadsafe(
                target.submit(request, **options), running[1]
            )
            return submitted.result()
        raise QueueClosedError(
            "defer_sync needs a SyncQueue: jobs.bind(SyncQueue(config)); with a WorkerQueue, "
            "await defer(...) on its loop"
        )


class TaskFunction(Generic[P, R]):
    """A function made a task function by :meth:`Jobs.task` (see the module docstring)."""

    def __init__(
        self, jobs: Jobs, function: Callable[P, R], name: str, options: Mapping[str, Any]
    ) -> None:
        self.jobs = jobs
        self.function = function
        self.name = name
        self.is_async = inspect.iscoroutinefunction(function)
        self.arguments: Arguments = arguments_model(function, name, context_type=TaskContext)
        self.model = self.arguments.model
        self._many: TypeAdapter[list[BaseModel]] = TypeAdapter(list[self.model])  # type: ignore[name-defined]
        self.options = _checked(options, name)
        self._call = _Call(self, self.options)
        functools.update_wrapper(self, function)
        kinds.registry.add(name, self.model)
        try:
            jobs.registry.add(name, self._handler())
        except ValueError:
            kinds.registry.remove(name)
            raise

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function here and now (it is still a function)."""
        return self.function(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<task function {self.name}>"

    # -- deferring -----------------------------------------------------------------------

    async def defer(self, *args: Any, **kwargs: Any) -> Task:
        """Validate the arguments (as the function's annotations say) and enqueue a task
        that calls the function with them; returns the task. Bad arguments raise
        :class:`~worker.core.errors.InvalidInputError` naming the parameter."""
        return await self._call.defer(args, kwargs)

    async def defer_many(self, calls: Sequence[Mapping[str, Any]]) -> list[Task]:
        """Enqueue one task per mapping of keyword arguments, atomically: one bad call
        refuses them all, naming its index and parameter."""
        return await self._call.defer_many(calls)

    def defer_sync(self, *args: Any, **kwargs: Any) -> Task:
        """:meth:`defer` from code without an event loop, through the jobs' bound
        :class:`SyncQueue` (or, in a plain ``def`` task function, its worker's queue)."""
        return self._call.defer_sync(args, kwargs)

    def configure(self, **options: Unpack[SubmitOptions]) -> ConfiguredTask:
        """The function with these options over the decorator's, to defer with
        (``send.configure(delay=60, priority=5).defer(...)``)."""
        return ConfiguredTask(self, {**self.options, **_checked(options, self.name)})

    # -- arguments -----------------------------------------------------------------------

    def arguments_of(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> BaseModel:
        """The request of one call's arguments, validated."""
        values = dict(kwargs)
        names = self.arguments.names
        if len(args) > len(names):
            raise InvalidInputError(
                f"{self.name}: takes {len(names)} argument{'s' if len(names) != 1 else ''}, "
                f"got {len(args)} positional"
            )
        for parameter, value in zip(names, args, strict=False):
            if parameter in values:
                raise InvalidInputError(f"{self.name}: {parameter} given twice")
            values[parameter] = value
        try:
            return self.model.model_validate(values)
        except ValidationError as exc:
            raise InvalidInputError(arguments.problems(self.name, exc)) from exc

    def arguments_of_many(self, calls: Sequence[Mapping[str, Any]]) -> list[BaseModel]:
        """The requests of many calls' keyword arguments, validated in one pass."""
        if isinstance(calls, str | bytes | Mapping) or not isinstance(calls, Sequence):
            raise InvalidInputError(
                f"{self.name}.defer_many takes a list of mappings of arguments, "
                f"got {type(calls).__name__}"
            )
        try:
            with paused_collection():
                return self._many.validate_python(calls)
        except ValidationError as exc:
            raise InvalidInputError(arguments.problems(f"{self.name} calls", exc)) from exc

    # -- running -------------------------------------------------------------------------

    def _handler(self) -> Callable[[TaskItem, TaskContext], Any]:
        """The processor: the function called with an item's stored arguments."""
        function: Callable[..., Any] = self.function
        names, context = self.arguments.names, self.arguments.context
        is_async, name = self.is_async, self.name

        async def handle(item: TaskItem, ctx: TaskContext) -> Any:
            request = item.request
            values = {name: getattr(request, name) for name in names}
            if context is not None:
                values[context] = ctx
            token = _running.set((ctx.queue, asyncio.get_running_loop()))
            try:
                if is_async:
                    result = await function(**values)
                else:  # the context (and so the running queue) goes along to the thread
                    result = await in_thread(function, **values)
            finally:
                _running.reset(token)
            if type(result) in _JSON_SCALARS:
                return result
            try:
                return to_jsonable_python(result)
            except ValueError as exc:  # no JSON form, bytes not UTF-8, a cycle, too deep
                raise PermanentError(f"{name} returned a value with no JSON form: {exc}") from exc

        handle.__qualname__ = f"{self.name} (task function)"
        return handle


class ConfiguredTask:
    """A task function with options of its own (:meth:`TaskFunction.configure`)."""

    def __init__(self, function: TaskFunction[Any, Any], options: Mapping[str, Any]) -> None:
        self.function = function
        self.options = dict(options)
        self._call = _Call(function, self.options)

    async def defer(self, *args: Any, **kwargs: Any) -> Task:
        """:meth:`TaskFunction.defer` with these options."""
        return await self._call.defer(args, kwargs)

    async def defer_many(self, calls: Sequence[Mapping[str, Any]]) -> list[Task]:
        """:meth:`TaskFunction.defer_many` with these options."""
        return await self._call.defer_many(calls)

    def defer_sync(self, *args: Any, **kwargs: Any) -> Task:
        """:meth:`TaskFunction.defer_sync` with these options."""
        return self._call.defer_sync(args, kwargs)

    def configure(self, **options: Unpack[SubmitOptions]) -> ConfiguredTask:
        """These options with more over them."""
        return ConfiguredTask(
            self.function, {**self.options, **_checked(options, self.function.name)}
        )


def _loop_here() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _checked(options: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Options refused now rather than at the first defer (the same checks as submit's)."""
    check_options(options)
    try:
        template(options, 0.0, many=False)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{name}: {exc}") from exc
    return dict(options)


#: The jobs the module-level :func:`task` decorator registers on (bind it to defer).
default_jobs = Jobs()


#: :meth:`Jobs.task` of :data:`default_jobs`: ``@worker.task``, ``@worker.task(...)``.
task = default_jobs.task

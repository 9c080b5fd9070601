"""Requests and their options as the tasks ``submit`` and ``submit_many`` enqueue.

The options are validated once per call, as the fields of one :class:`~worker.core.models.Task`
(the same model, so the same bounds and messages as ``enqueue``); every request then becomes
that task with an id and an item of its own, without a ``Task`` of its own being validated:
its row is the template's (:func:`worker.storage.rows.uniform_rows`), and the task returned is
built from the template's fields directly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from pydantic import BaseModel, ConfigDict, JsonValue, ValidationError

from worker.core import arguments
from worker.core.errors import InvalidInputError
from worker.core.models import Resources, RetryPolicy, Task, TaskItem
from worker.storage.payload import set_extra, set_fields_set, set_private


class TaskOptions(TypedDict, total=False):
    """:class:`SubmitOptions` but ``name``: what a task function's decorator takes as the
    defaults of its ``defer`` (its own ``name`` is the function's kind)."""

    queue: str
    priority: int
    delay: float
    schedule_at: float
    max_attempts: int | None
    retry_policy: RetryPolicy | None
    timeout_s: float | None
    visibility_timeout: float | None
    depends_on: Sequence[str | Task]
    idempotency_key: str | None
    metadata: Mapping[str, JsonValue]
    held: bool
    resources: Resources
    response_url: str | None


class SubmitOptions(TaskOptions, total=False):
    """What ``submit``, ``submit_many``, ``defer`` and ``configure`` take besides requests:
    the fields of :class:`~worker.core.models.Task` a producer chooses, and ``delay``
    (seconds from now, instead of ``schedule_at``) and ``response_url`` (of the item)."""

    name: str | None


#: Every option's name.
OPTIONS = frozenset(SubmitOptions.__annotations__)
#: The options that are fields of the task itself.
_TASK_FIELDS = OPTIONS - {"delay", "response_url"}
#: Shared by every task made here: they name every field (pydantic only ever adds to them).
_ALL_FIELDS = set(Task.model_fields)
_ITEM_FIELDS = set(TaskItem.model_fields)


class _Placeholder(BaseModel):
    """The template's request while its options are validated (never stored)."""

    model_config = ConfigDict(frozen=True)


_PLACEHOLDER = _Placeholder()
_set = object.__setattr__


def check_options(options: Mapping[str, Any]) -> None:
    """Refuse option names that are none, naming them and the ones there are."""
    unknown = sorted(set(options) - OPTIONS)
    if unknown:
        raise InvalidInputError(
            f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
            f"(options: {', '.join(sorted(OPTIONS))})"
        )


def template(options: Mapping[str, Any], now: float, *, many: bool) -> tuple[Task, str | None]:
    """The task each request becomes (id empty, times ``now``), validated as a
    :class:`Task` is, and the items' response URL. Bad options raise
    :class:`InvalidInputError` naming them."""
    check_options(options)
    fields: dict[str, Any] = {name: options[name] for name in _TASK_FIELDS if name in options}
    if "delay" in options:
        if "schedule_at" in options:
            raise InvalidInputError("give delay or schedule_at, not both")
        delay = arguments.seconds("delay", options["delay"], zero=True)
        fields["schedule_at"] = now + delay
    if many and fields.get("idempotency_key") is not None:
        raise InvalidInputError(
            "idempotency_key: one key for a whole batch would make it one task; "
            "submit the requests one by one, or enqueue Tasks with keys of their own"
        )
    depends = fields.get("depends_on")
    if isinstance(depends, list | tuple):  # anything else: the Task validation says why
        fields["depends_on"] = [d.id if isinstance(d, Task) else d for d in depends]
    url = options.get("response_url")
    fields["items"] = [_item(url)]
    try:
        task = Task.model_validate(fields)
    except ValidationError as exc:
        raise InvalidInputError(_named(exc, "delay" in options)) from exc
    values = task.__dict__
    for name in ("created_at", "updated_at"):
        values[name] = now
    if not values["schedule_at"]:
        values["schedule_at"] = now
    return task, url


def _item(url: Any) -> TaskItem:
    try:
        return TaskItem(request=_PLACEHOLDER, response_url=url)
    except ValidationError as exc:
        raise InvalidInputError(f"response_url: {exc.errors()[0]['msg']}") from exc


def _named(exc: ValidationError, delayed: bool) -> str:
    """pydantic's errors on the template, named by option (``priority: ...``)."""
    text = re.sub(r"(^|; )\.", r"\1", arguments.problems("", exc))
    if delayed:
        text = re.sub(r"(^|; )schedule_at\b", r"\1delay", text)
    return text


def tasks_of(template: Task, ids: Sequence[str], requests: Sequence[BaseModel]) -> list[Task]:
    """The tasks a submission inserted: ``template`` with each id and request (as a read
    returns them: every field counts as set).

    Each is made as :func:`worker.storage.payload.trusted` makes one, written out here: this
    runs for every task of a bulk submission, and the two calls per task cost a seventh of it.
    """
    base = dict(template.__dict__)
    url = template.items[0].response_url
    metadata, depends_on = base["metadata"], base["depends_on"]
    made: list[Task] = []
    append, copy, new = made.append, base.copy, object.__new__
    fields_set, extra, private = set_fields_set, set_extra, set_private
    for task_id, request in zip(ids, requests, strict=True):
        item = new(TaskItem)
        _set(item, "__dict__", {"request": request, "response_url": url, "result": None,
                                "error": None})  # fmt: skip
        fields_set(item, _ITEM_FIELDS)
        extra(item, None)
        private(item, None)
        fields = copy()
        fields["id"] = task_id
        fields["items"] = [item]
        fields["errors"] = []
        fields["metadata"] = dict(metadata) if metadata else {}
        fields["depends_on"] = list(depends_on) if depends_on else []
        task = new(Task)
        _set(task, "__dict__", fields)
        fields_set(task, _ALL_FIELDS)
        extra(task, None)
        private(task, None)
        append(task)
    return made

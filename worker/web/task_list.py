"""The task list's filters as the API and the pages take them: query parameters (or a JSON
object) of state, queue, kind, name, text in the error and a created range (epoch seconds or
ISO 8601), checked into a :class:`~worker.core.selection.TaskFilter`."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field

from worker.core.errors import InvalidInputError
from worker.core.selection import TaskFilter
from worker.core.states import TaskState
from worker.queue.admin import task_filter

#: The filters' names, in the order the page shows them.
FIELDS = ("state", "queue", "kind", "name", "error", "created_after", "created_before")


def instant(name: str, value: float | str | None) -> float | None:
    """Epoch seconds from a number or ISO 8601 text (UTC when it names no offset); an empty
    text is no value."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if math.isfinite(number):
            return number
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInputError(
            f"{name} must be epoch seconds or an ISO 8601 time, got {value!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class Filter(BaseModel):
    """Which tasks: every field given must match (the list's query parameters, as JSON)."""

    model_config = ConfigDict(extra="forbid")

    state: TaskState | None = None
    queue: str | None = None
    kind: str | None = Field(None, description="A request kind of one of the task's items.")
    name: str | None = Field(None, description="The task's name, exactly.")
    error: str | None = Field(None, description="Text in the last error (any case).")
    created_after: float | str | None = Field(
        None, description="Created at or after: epoch seconds or ISO 8601 (UTC by default)."
    )
    created_before: float | str | None = Field(None, description="Created before: the same.")

    def selection(self) -> TaskFilter:
        return task_filter(
            state=self.state,
            queue=self.queue,
            kind=self.kind,
            name=self.name,
            error=self.error,
            created_after=instant("created_after", self.created_after),
            created_before=instant("created_before", self.created_before),
        )


def query_filter(
    *,
    state: Annotated[str | None, Query(description="A state.")] = None,
    queue: Annotated[str | None, Query(description="A queue.")] = None,
    kind: Annotated[str | None, Query(description="A request kind of one of its items.")] = None,
    name: Annotated[str | None, Query(description="The task's name, exactly.")] = None,
    error: Annotated[str | None, Query(description="Text in the last error (any case).")] = None,
    created_after: Annotated[
        str | None, Query(description="Created at or after: epoch seconds or ISO 8601.")
    ] = None,
    created_before: Annotated[
        str | None, Query(description="Created before: epoch seconds or ISO 8601.")
    ] = None,
) -> dict[str, str]:
    """The filter's query parameters that were given (an empty one, as a form sends it, is
    not given)."""
    given = {
        "state": state,
        "queue": queue,
        "kind": kind,
        "name": name,
        "error": error,
        "created_after": created_after,
        "created_before": created_before,
    }
    return {key: value for key, value in given.items() if value}


def selection_of(given: dict[str, str]) -> TaskFilter:
    """The checked filter of :func:`query_filter`'s parameters (a refusal names the field)."""
    state = given.get("state")
    if state is not None and state not in {s.value for s in TaskState}:
        names = ", ".join(s.value for s in TaskState)
        raise InvalidInputError(f"unknown state {state!r}; states are {names}")
    return Filter.model_validate(given).selection()

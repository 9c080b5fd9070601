"""Callbacks by name, as readers see them: one per ending of a task that names one.

A task's ``on_success`` runs after it completed, its ``on_failure`` after it was discarded
(:mod:`worker.runtime.callbacks` runs them); each run is recorded here, with its attempts and
last error, and never changes the task's outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class CallbackState(StrEnum):
    PENDING = "pending"  # waiting for its next attempt (or running right now)
    DONE = "done"  # the callable returned
    FAILED = "failed"  # attempts used up, refused (its module is not allowed), or superseded


class CallbackEvent(StrEnum):
    SUCCESS = "success"  # the task completed: on_success(task, result)
    FAILURE = "failure"  # the task was discarded: on_failure(task, error)


class TaskCallback(BaseModel):
    """The run of one task's callback for one ending of the task."""

    model_config = ConfigDict(frozen=True)

    task_id: str
    event: CallbackEvent
    #: The callable, ``"package.module:function"``.
    target: str
    state: CallbackState
    attempts: int
    #: When the next attempt may start (pending callbacks only).
    next_attempt_at: float | None
    last_error: str | None
    done_at: float | None
    #: The task's ``finished_at`` at the ending this run is for, and which ending that is.
    finished_at: float
    ending: int
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class EndedTask:
    """A task that ended with a callback to run, as the scan sees it."""

    task_id: str
    finished_at: float


@dataclass(frozen=True, slots=True)
class ClaimedCallback:
    """A callback claimed for one attempt (``attempts`` counts this one)."""

    id: int
    task_id: str
    event: CallbackEvent
    target: str
    attempts: int
    lease_id: str
    finished_at: float

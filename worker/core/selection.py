"""Which tasks an operator means, and what a bulk action did to them.

A :class:`TaskFilter` names tasks by state, queue, request kind, name, text in the last
error and a range of ``created_at``; every field left None matches every task. The storage
turns it into one ``WHERE`` (:mod:`worker.storage.selection`), so a list page, a count and a
bulk action select the same tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

from worker.core.states import TaskState

if TYPE_CHECKING:
    from worker.core.models import Task

#: The actions an operator takes on many tasks at once.
BulkAction = Literal["cancel", "resume", "run_now", "hold", "release"]
BULK_ACTIONS: Final[tuple[BulkAction, ...]] = ("cancel", "resume", "run_now", "hold", "release")


@dataclass(frozen=True, slots=True)
class TaskFilter:
    """Tasks whose every given field matches: ``state`` and ``queue`` equal, ``kind`` the
    request kind of one of the task's items, ``name`` equal, ``error`` a piece of the last
    error's text (any case), ``created_after <= created_at < created_before``."""

    state: TaskState | None = None
    queue: str | None = None
    kind: str | None = None
    name: str | None = None
    error: str | None = None
    created_after: float | None = None
    created_before: float | None = None


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the page after a full one starts: its last task's id and, for pending tasks
    (listed in claim order), that task's priority as the page saw it."""

    after_id: str
    after_priority: int | None

    @classmethod
    def after(cls, page: Sequence[Task], limit: int, state: TaskState | None) -> Cursor | None:
        """The cursor after ``page`` (a list of ``state``), or None when it was not full."""
        if len(page) < limit or not page:
            return None
        last = page[-1]
        return cls(last.id, last.priority if state is TaskState.PENDING else None)


@dataclass(slots=True)
class BulkOutcome:
    """What a bulk action did: ``matched`` tasks looked at, ``changed`` of them moved (for a
    cancel, ``cancel_requested`` of those are running tasks asked to stop), ``skipped`` the
    rest (their state does not allow the action, or it has nothing to do: a held task held
    again), and for a selection by id, the ids ``not_found`` and ``skipped_ids``."""

    action: BulkAction
    matched: int = 0
    changed: int = 0
    cancel_requested: int = 0
    skipped: int = 0
    not_found: list[str] = field(default_factory=list)
    skipped_ids: list[str] = field(default_factory=list)

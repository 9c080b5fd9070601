"""``/api/tasks/count`` and ``/api/tasks/actions``: how many tasks a filter matches, and
one action (cancel, resume, run now, hold, release) on a selection of ids or on every task
a filter matches, with a dry run that only counts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, model_validator

from worker.core.selection import BulkAction, BulkOutcome
from worker.queue.admin import MAX_BULK_IDS
from worker.web.counters import Counters
from worker.web.task_list import Filter, query_filter, selection_of
from worker.web.tasks_api import Counted, Queue

router = APIRouter(prefix="/api/tasks", tags=["tasks"])


class TaskCount(BaseModel):
    count: int


class BulkRequest(BaseModel):
    """An action on the tasks ``ids`` names, or on every task ``filter`` matches."""

    model_config = ConfigDict(extra="forbid")

    action: BulkAction
    ids: list[str] | None = Field(None, max_length=MAX_BULK_IDS, description="Task ids.")
    filter: Filter | None = Field(None, description="Every task this matches ({}: all).")
    dry_run: bool = Field(False, description="Only count the tasks it would look at.")

    @model_validator(mode="after")
    def _one_target(self) -> BulkRequest:
        if self.ids is not None and self.filter is not None:
            raise ValueError("give either ids or filter, not both")
        if self.ids is None and self.filter is None:
            raise ValueError("give the tasks to act on: ids, or filter ({} is every task)")
        return self


class BulkDone(BaseModel):
    """What the action did (a dry run: ``matched`` only)."""

    action: BulkAction
    dry_run: bool
    matched: int = Field(description="Tasks looked at (a dry run: that it would look at).")
    changed: int = Field(description="Tasks moved (with running tasks asked to stop).")
    cancel_requested: int = Field(description="Running tasks asked to stop (a cancel).")
    skipped: int = Field(description="Tasks whose state does not allow it, or unchanged.")
    not_found: list[str] = Field(description="Ids of no task (a selection by id).")
    skipped_ids: list[str] = Field(description="Ids skipped (a selection by id).")


@router.get("/count", summary="How many tasks a filter matches (the list's filters)")
async def count(queue: Queue, given: Annotated[dict[str, str], Depends(query_filter)]) -> TaskCount:
    return TaskCount(count=await queue.count_tasks(selection_of(given)))


async def act(queue: Queue, counters: Counters, body: BulkRequest) -> BulkOutcome:
    """Run (or count, for a dry run) the action ``body`` asks for."""
    if body.dry_run:
        if body.filter is not None:
            matched = await queue.count_tasks(body.filter.selection())
        else:
            matched = len(set(body.ids or ()))
        return BulkOutcome(body.action, matched=matched)
    if body.filter is not None:
        outcome = await queue.act_on_tasks(body.action, selection=body.filter.selection())
    else:
        outcome = await queue.act_on_tasks(body.action, ids=body.ids)
    if outcome.changed:
        counters.actions.labels(action=body.action).inc(outcome.changed)
    return outcome


@router.post("/actions", summary="Cancel, resume, run now, hold or release many tasks")
async def actions(body: BulkRequest, queue: Queue, counters: Counted) -> BulkDone:
    outcome = await act(queue, counters, body)
    return BulkDone(
        action=outcome.action,
        dry_run=body.dry_run,
        matched=outcome.matched,
        changed=outcome.changed,
        cancel_requested=outcome.cancel_requested,
        skipped=outcome.skipped,
        not_found=outcome.not_found,
        skipped_ids=outcome.skipped_ids,
    )

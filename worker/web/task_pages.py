"""The tasks page: a filtered, keyset-paged table of tasks with checkboxes, and bulk actions
on the selection or on everything the filter matches, each confirmed on a page that says
how many tasks it touches ("Cancel 1,234 tasks?") before it runs.

Works without JavaScript: the filter is a GET form, an action a POST form (with the CSRF
token, :mod:`worker.web.csrf`) answered by the confirmation page, whose button posts it
again with ``confirm``; then a redirect back to the list says what changed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from worker.core.errors import InvalidInputError
from worker.core.kinds import registered_kinds
from worker.core.models import Task
from worker.core.selection import BULK_ACTIONS, BulkAction, Cursor
from worker.core.states import TaskState
from worker.web.bulk import BulkRequest, act
from worker.web.csrf import form_fields
from worker.web.documents import kinds
from worker.web.task_list import FIELDS, Filter, query_filter, selection_of
from worker.web.tasks_api import MAX_LIMIT, Counted, Queue
from worker.web.templating import render

router = APIRouter(include_in_schema=False)

LABELS: dict[str, str] = {
    "cancel": "Cancel",
    "resume": "Resume",
    "run_now": "Run now",
    "hold": "Hold",
    "release": "Release",
}
#: How much of a task's last error the table shows.
EXCERPT = 120


def when(at: float | None) -> str:
    if at is None:
        return ""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")


def row(task: Task) -> dict[str, Any]:
    error = task.last_error or ""
    return {
        "id": task.id,
        "name": task.name or "",
        "kind": ", ".join(sorted(kinds(task))),
        "queue": task.queue,
        "state": task.state.value,
        "held": task.held,
        "attempts": task.attempt_count,
        "max_attempts": task.max_attempts,
        "created": when(task.created_at),
        "error": error if len(error) <= EXCERPT else error[: EXCERPT - 1] + "…",
    }


@router.get("/tasks", response_class=HTMLResponse)
async def tasks_page(
    request: Request,
    queue: Queue,
    given: Annotated[dict[str, str], Depends(query_filter)],
    *,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    after: str | None = None,
    after_priority: int | None = None,
    done: str | None = None,
    changed: int = 0,
    skipped: int = 0,
    asked: int = 0,
) -> Response:
    problem = None
    rows: list[dict[str, Any]] = []
    next_after: dict[str, str] | None = None
    try:
        chosen = selection_of(given)
        page = await queue.list_tasks(
            chosen.state,
            chosen.queue,
            limit,
            after or None,
            kind=chosen.kind,
            name=chosen.name,
            error=chosen.error,
            created_after=chosen.created_after,
            created_before=chosen.created_before,
            after_priority=after_priority,
        )
        rows = [row(task) for task in page]
        if cursor := Cursor.after(page, limit, chosen.state):
            next_after = {"after": cursor.after_id}
            if cursor.after_priority is not None:
                next_after["after_priority"] = str(cursor.after_priority)
    except InvalidInputError as exc:
        problem = str(exc)
    query = dict(given)
    if limit != 50:
        query["limit"] = str(limit)
    message = None
    if done in LABELS:
        message = f"{LABELS[done]}: {changed:,} changed, {skipped:,} skipped"
        if asked:
            message += f" ({asked:,} running asked to stop)"
    return render(
        request,
        "tasks.html",
        status_code=422 if problem else 200,
        tasks=rows,
        filters=given,
        fields=FIELDS,
        states=[s.value for s in TaskState],
        kinds=list(registered_kinds()),
        problem=problem,
        message=message,
        actions=LABELS,
        next_href=None if next_after is None else "?" + urlencode({**query, **next_after}),
        first_href="?" + urlencode(query) if after else None,
        query=query,
    )


def _filter_of(fields: dict[str, list[str]]) -> dict[str, str]:
    return {
        name: fields[f"filter_{name}"][0]
        for name in FIELDS
        if fields.get(f"filter_{name}", [""])[0]
    }


@router.post("/tasks/actions", response_class=HTMLResponse)
async def tasks_action(request: Request, queue: Queue, counters: Counted) -> Response:
    """A bulk action from the page: confirmed first, then run (see the module docstring)."""
    fields = form_fields(await request.body())
    action = fields.get("action", [""])[0]
    scope = fields.get("scope", ["ids"])[0]
    ids = fields.get("ids", [])
    given = _filter_of(fields)
    back = f"{request.scope.get('root_path', '')}/tasks"
    if given:
        back += "?" + urlencode(given)
    if action not in BULK_ACTIONS or scope not in ("ids", "filter"):
        return render(
            request, "confirm.html", status_code=422, problem=f"unknown action {action!r}",
            back=back,
        )  # fmt: skip
    chosen: BulkAction = action
    try:
        body = BulkRequest(
            action=chosen,
            ids=ids if scope == "ids" else None,
            filter=Filter.model_validate(given) if scope == "filter" else None,
            dry_run=not fields.get("confirm"),
        )
        if body.filter is not None:
            selection_of(given)  # refuse a bad filter with its message
        outcome = await act(queue, counters, body)
    except (InvalidInputError, ValueError) as exc:
        return render(request, "confirm.html", status_code=422, problem=str(exc), back=back)
    if body.dry_run:
        count = outcome.matched
        what = "task" if count == 1 else "tasks"
        scope_text = "selected" if scope == "ids" else "matching the filter"
        return render(
            request,
            "confirm.html",
            question=f"{LABELS[action]} {count:,} {what}?",
            detail=f"{count:,} {what} {scope_text}",
            count=count,
            action=action,
            label=LABELS[action],
            scope=scope,
            ids=ids if scope == "ids" else [],
            filter_fields={f"filter_{k}": v for k, v in given.items()},
            back=back,
        )
    result = {
        **given,
        "done": action,
        "changed": str(outcome.changed),
        "skipped": str(outcome.skipped + len(outcome.not_found)),
    }
    if outcome.cancel_requested:
        result["asked"] = str(outcome.cancel_requested)
    target = f"{request.scope.get('root_path', '')}/tasks?{urlencode(result)}"
    return RedirectResponse(target, status_code=303)

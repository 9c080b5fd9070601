"""How tasks and statistics look: rich panels and tables, JSON documents, progress views."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from rich import box
from rich.cells import cell_len, set_cell_size
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from worker.core.callbacks import CallbackEvent, CallbackState, TaskCallback
from worker.core.errors import UnknownRequestKindError
from worker.core.kinds import kind_of
from worker.core.models import Task, UnloadedRequest
from worker.core.states import TaskState

if TYPE_CHECKING:  # the schedules (cron) load for wq schedule only
    from worker.core.schedules import Schedule

# Piped output is not cut to 80 columns (COLUMNS still wins when set).
_PIPE_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160
# No markup: what is printed holds the tasks' own text (names, errors, worker ids,
# progress messages), in which "[/]" or "[bold]" would be read as rich's tags.
stdout = Console(highlight=False, markup=False, emoji=False, width=_PIPE_WIDTH)
stderr = Console(stderr=True, highlight=False, markup=False, emoji=False)

STATE_STYLES = {
    TaskState.PENDING: "cyan",
    TaskState.PROCESSING: "yellow",
    TaskState.COMPLETED: "green",
    TaskState.RETRYABLE: "magenta",
    TaskState.DISCARDED: "red",
    TaskState.CANCELLED: "dim",
}


CALLBACK_STYLES = {
    CallbackState.PENDING: "cyan",
    CallbackState.DONE: "green",
    CallbackState.FAILED: "red",
}


# -- plain values --------------------------------------------------------------------------

#: Control characters (C0 but tab and newline, DEL, C1) shown as escapes: printed, a
#: terminal acts on them (ESC and CSI start the sequences that recolour, move the cursor,
#: clear the screen or retitle the window), so a task's name or error could do that.
_CONTROLS = {
    code: f"\\x{code:02x}"
    for code in (*range(0x20), 0x7F, *range(0x80, 0xA0))
    if code not in (0x09, 0x0A)
}


def printable(text: str) -> str:
    """``text`` with its control characters as ``\\xNN`` escapes (see :data:`_CONTROLS`)."""
    return text.translate(_CONTROLS)


def request_kind(request: BaseModel) -> str:
    if isinstance(request, UnloadedRequest):
        return request.kind
    try:
        return kind_of(type(request))
    except UnknownRequestKindError:
        return type(request).__name__


def request_summary(request: BaseModel, width: int = 60) -> str:
    """``kind: {fields as JSON}``, cut to ``width`` columns of a terminal (a wide character,
    CJK or emoji, takes two)."""
    data = request.data if isinstance(request, UnloadedRequest) else request.model_dump(mode="json")
    text = printable(f"{request_kind(request)}: {json.dumps(data, ensure_ascii=False)}")
    return text if cell_len(text) <= width else set_cell_size(text, width - 1).rstrip() + "…"


def duration(seconds: float | None) -> str:
    """``"850ms"``, ``"12.3s"``, ``"4m05s"``, ``"3h20m"``, ``"2d04h"``; ``"-"`` for None."""
    if seconds is None:
        return "-"
    s = abs(seconds)
    if s < 1:
        text = f"{s * 1000:.0f}ms"
    elif s < 60:
        text = f"{s:.1f}s"
    elif s < 3600:
        text = f"{int(s // 60)}m{int(s % 60):02d}s"
    elif s < 86400:
        text = f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"
    else:
        text = f"{int(s // 86400)}d{int(s % 86400 // 3600):02d}h"
    return f"-{text}" if seconds < 0 else text


def instant(at: float | None, now: float, zone: str | None = None) -> str:
    """The time in ``zone`` (an IANA name; None: the machine's), named, and how far from
    now: ``"2026-01-02 10:00:00 CET (3m05s ago)"``."""
    if at is None:
        return "-"
    if zone:
        from worker.core.schedules import zone as named_zone

        moment = datetime.fromtimestamp(at, named_zone(zone))
    else:
        moment = datetime.fromtimestamp(at)
    stamp = moment.astimezone(moment.tzinfo).strftime("%Y-%m-%d %H:%M:%S %Z")
    delta = now - at
    relation = f"{duration(delta)} ago" if delta >= 0 else f"in {duration(-delta)}"
    return f"{stamp} ({relation})"


def progress_text(task: Task) -> str:
    """The handler's last report; a completed task's is its whole amount (the handler's
    last report came before the end, and its message is what it was doing then)."""
    progress = task.progress
    if progress is None:
        return "-"
    done = task.state is TaskState.COMPLETED
    current = progress.total if done and progress.total is not None else progress.current
    amount = f"{current:g}" if progress.total is None else f"{current:g}/{progress.total:g}"
    if progress.total:
        amount += f" ({100 * current / progress.total:.0f}%)"
    return f"{amount} {printable(progress.message)}" if progress.message and not done else amount


@dataclass(frozen=True, slots=True)
class ProgressView:
    """What a progress bar shows for a task: a label, how far, out of how much (None: unknown)."""

    description: str
    completed: float
    total: float | None


def progress_view(task: Task) -> ProgressView:
    progress = task.progress
    label = task.state.value
    if progress is None:
        done = task.state is TaskState.COMPLETED
        return ProgressView(label, 1.0 if done else 0.0, 1.0 if done else None)
    total = progress.total
    if task.state is TaskState.COMPLETED:  # what it was doing last is over: see progress_text
        return (
            ProgressView(label, total, total)
            if total is not None
            else ProgressView(label, 1.0, 1.0)
        )
    if progress.message:
        label = f"{label}: {printable(progress.message)}"
    return ProgressView(label, progress.current, total)


# -- JSON ----------------------------------------------------------------------------------


def task_document(task: Task) -> dict[str, Any]:
    """A task as JSON: the model's fields, plus each item's request ``kind``."""
    document = task.model_dump(mode="json")
    for item, dumped in zip(task.items, document["items"], strict=True):
        dumped["kind"] = request_kind(item.request)
    return document


# -- rich ----------------------------------------------------------------------------------


def state_text(state: TaskState) -> Text:
    return Text(state.value, style=STATE_STYLES[state])


def task_panel(
    task: Task, why: str, now: float | None = None, *, callbacks: Sequence[TaskCallback] = ()
) -> Panel:
    now = time.time() if now is None else now
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    attempts = f"{task.attempt_count}" + (f" of {task.max_attempts}" if task.max_attempts else "")
    rows: list[tuple[str, RenderableType]] = [
        ("state", state_text(task.state) + (Text(" (held)") if task.held else Text(""))),
        ("why", why),
        ("queue", f"{task.queue}   priority {task.priority}"),
        ("attempts", attempts + (f", {task.expired_count} expired" if task.expired_count else "")),
        ("progress", progress_text(task)),
        ("created", instant(task.created_at, now)),
        ("scheduled", instant(task.schedule_at, now)),
        ("started", instant(task.started_at, now)),
        ("finished", instant(task.finished_at, now)),
    ]
    running = task.state is TaskState.PROCESSING
    if task.started_at is not None and (running or task.finished_at is not None):
        end = task.finished_at if task.finished_at is not None else now
        rows.append(("ran for", duration(end - task.started_at)))
    if running:
        until = instant(task.lease_expires_at, now)
        lease = f"worker {printable(task.worker_id or '-')}, lease until {until}"
        rows.append(("lease", lease))
    if task.timeout_s is not None:
        rows.append(("timeout", duration(task.timeout_s)))
    if task.depends_on:
        waiting = f" (waiting on {task.waiting_on})" if task.waiting_on else ""
        rows.append(("depends on", ", ".join(task.depends_on) + waiting))
    if task.cancel_requested_at is not None:
        rows.append(("cancel", f"requested {instant(task.cancel_requested_at, now)}"))
    if task.last_error:
        rows.append(("last error", Text(printable(task.last_error), style="red")))
    rows += _callback_rows(task, callbacks, now)
    for label, value in rows:
        grid.add_row(label, value)
    items = Table(title="items", title_justify="left", show_edge=False)
    items.add_column("#", justify="right")
    items.add_column("request")
    items.add_column("result / error")
    for index, item in enumerate(task.items):
        outcome: RenderableType = "-"
        if item.error:
            outcome = Text(printable(item.error), style="red")
        elif item.result is not None:
            outcome = printable(json.dumps(item.result, ensure_ascii=False))
        items.add_row(str(index), request_summary(item.request), outcome)
    parts: list[RenderableType] = [grid, Text(""), items]
    if task.errors:
        parts += [Text(""), _attempts_table(task, now)]
    title = f"task {task.id}" + (f" · {printable(task.name)}" if task.name else "")
    return Panel(Group(*parts), title=Text(title), title_align="left", expand=False)


def _attempts_table(task: Task, now: float) -> Table:
    """Each failed attempt: when it ended, the worker that ran it, and its error."""
    table = Table(title="failed attempts", title_justify="left", show_edge=False)
    table.add_column("#", justify="right")
    table.add_column("ended")
    table.add_column("worker")
    table.add_column("error")
    for entry in task.errors:
        ended = instant(entry.at, now) + (" (lease expired)" if entry.expired else "")
        table.add_row(
            str(entry.attempt),
            ended,
            printable(entry.worker or "-"),
            Text(printable(entry.error), style="red"),
        )
    return table


def _callback_rows(
    task: Task, callbacks: Sequence[TaskCallback], now: float
) -> list[tuple[str, RenderableType]]:
    named = [("on success", task.on_success), ("on failure", task.on_failure)]
    rows: list[tuple[str, RenderableType]] = [(k, v) for k, v in named if v is not None]
    return rows + [("callback", callback_text(run, now)) for run in callbacks]


def callback_text(run: TaskCallback, now: float) -> Text:
    """``on_success app.hooks:done: done after 3 attempts`` and the like."""
    hook = "on_success" if run.event is CallbackEvent.SUCCESS else "on_failure"
    attempts = f"{run.attempts} attempt{'' if run.attempts == 1 else 's'}"
    text = Text(f"{hook} {run.target}: ")
    text.append(run.state.value, style=CALLBACK_STYLES[run.state])
    if run.state is CallbackState.PENDING and run.next_attempt_at is not None:
        text.append(f" ({attempts} so far, next {instant(run.next_attempt_at, now)})")
    else:
        text.append(f" after {attempts}")
    if run.last_error:
        text.append(f"; last error: {printable(run.last_error)}", style="red")
    return text


#: The widest a table's name column gets (a longer name folds onto more lines).
_NAME_WIDTH = 40
#: The narrowest ``wq list``'s name column is left before columns give way to it.
_NAME_ROOM = 20
#: ``wq list``'s columns that give way, in this order, on a terminal too narrow for all of
#: them and the name (``wq status ID`` shows each of them).
_GIVE_WAY = ("progress", "att", "prio")
#: What a column of ``wq list`` costs beside its text: one space of padding, one of rule.
_GAP = 2
#: The widest a queue's column gets (a longer queue name folds onto more lines).
_QUEUE_WIDTH = 20


def plain_table(**options: Any) -> Table:
    """A table of plain columns (a rule under the header, one space between columns, no
    other lines): the most columns an 80-column terminal holds (see :data:`_GAP`)."""
    return Table(
        box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0), **options
    )


def tasks_table(tasks: list[Task], now: float | None = None, width: int | None = None) -> Table:
    """``wq list``: a line per task (a long name folds) in plain columns, ``width`` wide (by
    default, standard output's): on a narrow terminal the columns of :data:`_GIVE_WAY`
    go before the name and request column is squeezed below :data:`_NAME_ROOM`
    characters."""
    now = time.time() if now is None else now
    width = stdout.width if width is None else width
    cells: dict[str, list[str | Text]] = {
        "id": [t.id for t in tasks],
        "state": [state_text(t.state) + (Text(" held") if t.held else Text("")) for t in tasks],
        "queue": [t.queue for t in tasks],
        "prio": [str(t.priority) for t in tasks],
        "att": [str(t.attempt_count) for t in tasks],
        "age": [duration(now - t.created_at) for t in tasks],
        "progress": [progress_text(t) for t in tasks],
    }
    # Measured here, once (rich would measure every cell for every layout it tries).
    widths = {
        name: max([cell_len(name), *(cell_len(str(cell)) for cell in column)])
        for name, column in cells.items()
    }
    widths["queue"] = min(widths["queue"], _QUEUE_WIDTH)

    def left() -> int:  # the columns the name and request column is left
        return width - sum(widths.values()) - _GAP * len(widths)

    for name in _GIVE_WAY:
        if left() >= _NAME_ROOM:
            break
        del cells[name], widths[name]
    # Narrower still: the queue's name folds into less, so that the ids stay whole.
    if left() < _NAME_ROOM:
        widths["queue"] = max(widths["queue"] - (_NAME_ROOM - left()), len("queue"))
    table = plain_table()
    for name in cells:
        table.add_column(name, width=widths[name], no_wrap=name != "queue", overflow="fold")
    table.add_column("name / request", max_width=_NAME_WIDTH, overflow="fold")
    # A request's summary is cut to one line of the room left; a name is shown whole.
    room = min(_NAME_WIDTH, max(left(), 4))
    names = [printable(t.name or "") or request_summary(t.items[0].request, room) for t in tasks]
    for row in zip(*cells.values(), names, strict=True):
        table.add_row(*row)
    return table


def cron_zone(schedule: Schedule) -> str | None:
    """The zone a schedule's times are shown in: a cron schedule's own (its ticks fall at
    times of day there); None, the machine's, for an interval."""
    return schedule.timing.timezone if schedule.timing.cron is not None else None


def schedules_table(schedules: list[Schedule], now: float) -> Table:
    """One row per schedule: name, timing, what it enqueues, catch-up, next run, last tick."""
    table = Table(show_edge=False)
    for name in ("name", "when", "enqueues", "queue", "catch-up", "next run", "last tick"):
        if name == "name":  # a long name folds onto more lines, whole, leaving the rest room
            table.add_column(name, max_width=_NAME_WIDTH, overflow="fold")
        else:
            table.add_column(name, no_wrap=name == "next run")
    for schedule in schedules:
        request = printable(json.dumps(schedule.request, ensure_ascii=False))
        enqueues = f"{schedule.kind}: {request}"
        if len(enqueues) > 40:
            enqueues = enqueues[:39] + "…"
        catch_up: str = schedule.catch_up
        if schedule.catch_up == "all":
            catch_up += f" (≤{schedule.max_catch_up})"
        last = instant(schedule.last_tick_at, now, cron_zone(schedule))
        if schedule.last_task_id:
            last += f" {schedule.last_task_id}"
        table.add_row(
            schedule.name,
            schedule.timing.describe(),
            enqueues,
            schedule.options.queue,
            catch_up,
            instant(schedule.next_run_at, now, cron_zone(schedule)),
            last,
        )
    return table


def stats_view(stats: dict[str, Any], paused: dict[str, float]) -> Group:
    states = [s.value for s in TaskState]
    queues = plain_table(title="queues", title_justify="left")
    # The counts keep their headers whole; a long (or paused) queue's name folds.
    queues.add_column("queue", max_width=_QUEUE_WIDTH, overflow="fold")
    for state in states:
        queues.add_column(
            state,
            justify="right",
            style=STATE_STYLES[TaskState(state)],
            no_wrap=True,
            min_width=len(state),
        )
    queues.add_column("total", justify="right", no_wrap=True, min_width=len("total"))
    for name, counts in sorted(stats["queues"].items()):
        label = f"{name} (paused)" if name in paused else name
        row = [str(counts.get(state, 0)) for state in states]
        queues.add_row(label, *row, str(sum(counts.values())))
    totals = stats["states"]
    queues.add_row("all", *(str(totals[s]) for s in states), str(totals["total"]), style="bold")
    figures = Table.grid(padding=(0, 2))
    figures.add_column(style="bold")
    figures.add_column()
    rate = stats["success_rate"]
    for label, value in (
        (f"last {duration(stats['window_s'])}", ""),
        ("completed", str(stats["completed"])),
        ("discarded", str(stats["discarded"])),
        ("cancelled", str(stats["cancelled"])),
        ("retries", str(stats["retries"])),
        ("throughput", f"{stats['throughput_per_s']:.2f}/s"),
        ("avg processing", duration(stats["avg_processing_s"])),
        ("p95 processing", duration(stats["p95_processing_s"])),
        ("success rate", "-" if rate is None else f"{100 * rate:.1f}%"),
        ("oldest pending", duration(stats["oldest_pending_age_s"])),
        ("workers alive", str(stats["workers_alive"])),
        ("paused queues", ", ".join(sorted(paused)) or "-"),
    ):
        figures.add_row(label, value)
    return Group(queues, Text(""), figures)

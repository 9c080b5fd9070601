"""The read commands' statements, compiled for SQLite ahead of time.

``wq status``, ``list``, ``why`` and ``stats`` on a SQLite file read through stdlib
``sqlite3`` (:mod:`worker.storage.sqlite.quick_reads`), so that they need not import
SQLAlchemy (about 0.2 s of a read's 0.8 s). They run the queue's own statements: the
builders the stores call (:mod:`worker.storage.reads`, :mod:`worker.storage.control`,
:mod:`worker.storage.selection`, the SQLite backend) are called here with a sentinel for
each value, compiled for SQLite, and written to :mod:`worker.storage.sqlite.quick_sql` with
the map from each bound parameter to the value it stands for. A test regenerates the file
and fails when it differs, so a changed statement cannot leave the read commands behind.

Regenerate with ``python -m worker.storage.sqlite.quick_statements`` (``make quick-sql``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy.dialects import sqlite

from worker.core.selection import TaskFilter
from worker.core.states import TaskState
from worker.storage import control, reads, selection
from worker.storage.outbox import rows_of_task
from worker.storage.revision import HEAD_REVISION, REVISIONS
from worker.storage.rows import RAW_COLUMNS
from worker.storage.schema import metadata, task_callbacks
from worker.storage.sqlite.backend import SqliteBackend
from worker.storage.sqlite.quick_reads import list_key

#: Where the compiled statements go.
TARGET = Path(__file__).parent / "quick_sql.py"

#: A stand-in value for each parameter, by the parameter's name: distinct from every value
#: a statement holds of its own, so that each bound parameter's sentinel says what it is.
_SENTINELS: dict[str, Any] = {
    "task_id": "\x00task_id",
    "queue": "\x00queue",
    "after_id": "\x00after_id",
    "after_priority": 987_654_321_001,
    "priority": 987_654_321_002,
    "limit": 987_654_321_003,
    "now": 9.876_543_210_04e15,
    "since": 9.876_543_210_05e15,
}
_NAMES = {value: name for name, value in _SENTINELS.items()}


def _list_pages() -> Iterator[tuple[str, Any]]:
    for state in (None, *TaskState):
        for by_queue in (False, True):
            for after in (False, True):
                chosen = TaskFilter(state=state, queue=_SENTINELS["queue"] if by_queue else None)
                pending_after = after and state is TaskState.PENDING
                yield (
                    list_key(state, by_queue=by_queue, after=after),
                    selection.list_page(
                        chosen,
                        after_id=_SENTINELS["after_id"] if after else None,
                        after_priority=_SENTINELS["after_priority"] if pending_after else None,
                        limit=_SENTINELS["limit"],
                        columns=RAW_COLUMNS,
                    ),
                )


def statements() -> dict[str, Any]:
    """Every statement the read commands run, by name, built with the sentinels."""
    s, backend = _SENTINELS, SqliteBackend()
    found: dict[str, Any] = {
        "task": reads.task_row(s["task_id"]),
        "priority": reads.priority_of(s["task_id"]),
        "paused": control.paused_rows(),
        "position": backend.position().bindparams(
            now=s["now"], queue=s["queue"], priority=s["priority"], id=s["task_id"]
        ),
        "dependencies": control.unfinished_dependencies(s["task_id"]),
        "state_counts": backend.state_counts(by_queue=False),
        "state_counts:queue": backend.state_counts(by_queue=True).bindparams(queue=s["queue"]),
        "finished_since": control.finished_since(s["since"]),
        "oldest_pending": backend.oldest_pending(),
        "per_queue_and_state": control.PER_QUEUE_AND_STATE,
        "live_workers": control.live_workers(s["since"]),
        "running_per_worker": control.running_per_worker(),
        "callbacks": rows_of_task(task_callbacks, s["task_id"], ("ending",)),
    }
    found.update(_list_pages())
    return found


#: A compiled statement: its SQL (named parameters), each bound parameter's value name and
#: the bound parameters that hold a constant of the statement's own.
Compiled = tuple[str, tuple[tuple[str, str], ...], dict[str, Any]]


def compiled(statement: Any) -> Compiled:
    """``statement`` compiled for SQLite with named parameters (``:name``)."""
    dialect = sqlite.dialect(paramstyle="named")
    result = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    names: list[tuple[str, str]] = []
    constants: dict[str, Any] = {}
    for bind, value in result.params.items():
        if isinstance(value, str | int | float) and value in _NAMES:
            names.append((bind, _NAMES[value]))
        else:
            constants[bind] = value
    return str(result), tuple(names), constants


def _columns() -> dict[str, tuple[str, ...]]:
    return {table.name: tuple(c.name for c in table.columns) for table in metadata.sorted_tables}


def source() -> str:
    """The text of :mod:`worker.storage.sqlite.quick_sql`."""
    lines = [
        '"""The read commands\' SQL for SQLite, compiled from the queue\'s own statements.',
        "",
        "Generated by ``python -m worker.storage.sqlite.quick_statements`` (``make quick-sql``)",
        "from the schema at :data:`REVISION`: do not edit (a test regenerates it and compares).",
        '"""',
        "",
        "from typing import Any",
        "",
        "#: The schema revision these statements were compiled for.",
        f"REVISION = {HEAD_REVISION!r}",
        "#: Every revision this version of the queue knows, oldest first.",
        f"REVISIONS = {REVISIONS!r}",
        "#: Every column of each table the schema declares (a file lacking one goes the",
        "#: queue's own way, which names what is missing).",
        f"COLUMNS: dict[str, tuple[str, ...]] = {_columns()!r}",
        "#: By name: the SQL, each bound parameter's value name, and bound constants.",
        "STATEMENTS: dict[str, tuple[str, tuple[tuple[str, str], ...], dict[str, Any]]] = {",
    ]
    for name, statement in statements().items():
        sql, names, constants = compiled(statement)
        lines.append(f"    {name!r}: (")
        lines.append(f"        {sql!r},")
        lines.append(f"        {names!r},")
        lines.append(f"        {constants!r},")
        lines.append("    ),")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main() -> None:
    TARGET.write_text(source(), encoding="utf-8")
    sys.stdout.write(f"wrote {TARGET}\n")


if __name__ == "__main__":
    main()

"""The portable SQL vocabulary the queue's statements are written in.

Each construct here is a SQLAlchemy element without SQL of its own: every backend registers
how it is spelled (``@compiles`` rules in ``worker/storage/<backend>/sql.py``, loaded at the end
of this module), so one statement serves SQLite and PostgreSQL and compiles to each one's
idiom. Lists travel as one JSON parameter (``:ids`` holding ``["a", "b"]``), which keeps a
statement's compiled form the same whatever the batch size.
"""

from __future__ import annotations

from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement, TextClause
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal

from worker.core.states import TaskState
from worker.storage.schema import tasks

#: How a field of :func:`json_rows` is typed: text, a float, an integer, or JSON.
FieldType = Literal["text", "float", "int", "json"]

_TYPES: dict[FieldType, sa.types.TypeEngine[Any]] = {
    "text": sa.String(),
    "float": sa.Float(),
    "int": sa.Integer(),
    "json": sa.Text(),
}


class JsonValues(TextClause):
    """``SELECT value FROM <the elements of the JSON list :name>``, for ``IN``."""

    __visit_name__ = "json_values"
    inherit_cache = True
    # What tells two of these apart in a statement's cache key: the parameter (its name).
    _traverse_internals = [("param", InternalTraversal.dp_clauseelement)]  # noqa: RUF012

    def __init__(self, name: str) -> None:
        super().__init__("")
        self.param: sa.BindParameter[str] = sa.bindparam(name, type_=sa.String)


class JsonRows(TextClause):
    """``SELECT <fields> FROM <the arrays of the JSON list :name>``: field ``i`` of each
    row is element ``i`` of its array, typed as given (JSON ``null`` is SQL NULL)."""

    __visit_name__ = "json_rows"
    inherit_cache = True
    _traverse_internals = [  # noqa: RUF012
        ("param", InternalTraversal.dp_clauseelement),
        ("fields", InternalTraversal.dp_plain_obj),
    ]

    def __init__(self, name: str, fields: tuple[tuple[str, FieldType], ...]) -> None:
        super().__init__("")
        self.param: sa.BindParameter[Any] = sa.bindparam(name)
        self.fields = fields


class JsonPairs(TextClause):
    """``SELECT key AS id, value AS lease FROM <the JSON object :name>``."""

    __visit_name__ = "json_pairs"
    inherit_cache = True
    _traverse_internals = [("param", InternalTraversal.dp_clauseelement)]  # noqa: RUF012

    def __init__(self, name: str) -> None:
        super().__init__("")
        self.param: sa.BindParameter[Any] = sa.bindparam(name)


class Greatest(FunctionElement[Any]):
    """The largest of its arguments."""

    name = "greatest"
    inherit_cache = True


class AllNull(ColumnElement[bool]):
    """Whether every one of its columns is NULL."""

    __visit_name__ = "all_null"
    inherit_cache = True
    type = sa.Boolean()

    def __init__(self, *columns: ColumnElement[Any]) -> None:
        self.columns = columns


class TextAsStored(ColumnElement[Any]):
    """A text column read back as it is stored: bytes on SQLite (which may hold text that
    is not UTF-8, and whose driver would fail the whole fetch on it), the text elsewhere."""

    __visit_name__ = "text_as_stored"
    inherit_cache = True
    type = sa.types.NullType()
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement)]  # noqa: RUF012

    def __init__(self, column: ColumnElement[Any]) -> None:
        self.column = column


class NotIndexed(ColumnElement[Any]):
    """A column that the planner may not look up through an index: ``+column`` on SQLite
    (its idiom for it), the column itself on PostgreSQL, whose costs choose well."""

    __visit_name__ = "not_indexed"
    inherit_cache = True
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement)]  # noqa: RUF012

    def __init__(self, column: ColumnElement[Any]) -> None:
        self.column = column
        self.type = column.type


class JsonEquals(ColumnElement[bool]):
    """Whether a JSON column holds the JSON ``text`` (a constant, inlined)."""

    __visit_name__ = "json_equals"
    inherit_cache = True
    type = sa.Boolean()

    def __init__(self, column: ColumnElement[Any], text: str) -> None:
        self.column = column
        self.text = text


class AppendError(ColumnElement[Any]):
    """``errors`` with one more :class:`~worker.core.models.AttemptError` entry at its end."""

    __visit_name__ = "append_error"
    inherit_cache = True
    type = sa.JSON()

    def __init__(self, error: ColumnElement[Any], at: Any, *, expired: bool) -> None:
        self.error = error
        self.at = at if isinstance(at, ColumnElement) else sa.literal(at, sa.Float())
        self.expired = expired


class HasResponseUrl(ColumnElement[bool]):
    """Whether an ``items`` column holds an item with a ``response_url`` string."""

    __visit_name__ = "has_response_url"
    inherit_cache = True
    type = sa.Boolean()

    def __init__(self, items: ColumnElement[Any]) -> None:
        self.items = items


class HasKind(ColumnElement[bool]):
    """Whether an ``items`` column holds an item of the request kind in ``kind`` (a bound
    parameter)."""

    __visit_name__ = "has_kind"
    inherit_cache = True
    type = sa.Boolean()

    def __init__(self, items: ColumnElement[Any], kind: sa.BindParameter[str]) -> None:
        self.items = items
        self.kind = kind


def json_values(name: str) -> JsonValues:
    """The elements of the JSON list in parameter ``:name``, for ``column.in_(...)``.

    The list (JSON text) is given when the statement runs, never bound here: the construct
    is not part of the statement's cache key, so a value bound in it would be compiled
    once and reused by every later statement of the same shape."""
    return JsonValues(name)


def json_rows(name: str, alias: str = "a", **fields: FieldType) -> sa.Subquery:
    """The JSON list of arrays in ``:name`` as a subquery of typed columns (``a.id``, ...)."""
    rows = JsonRows(name, tuple(fields.items()))
    columns = [sa.column(field, _TYPES[kind]) for field, kind in fields.items()]
    return rows.columns(*columns).subquery(alias)


def json_pairs(name: str, alias: str = "a") -> sa.Subquery:
    """The JSON object ``{task id: lease}`` in ``:name`` as a subquery ``(id, lease)``."""
    return (
        JsonPairs(name)
        .columns(sa.column("id", sa.String), sa.column("lease", sa.String))
        .subquery(alias)
    )


def greatest(*values: Any) -> ColumnElement[Any]:
    return Greatest(*values)


def all_null(*columns: ColumnElement[Any]) -> ColumnElement[bool]:
    return AllNull(*columns)


def text_as_stored(column: ColumnElement[Any]) -> ColumnElement[Any]:
    return TextAsStored(column)


def not_indexed(column: ColumnElement[Any]) -> ColumnElement[Any]:
    return NotIndexed(column)


def stored_text(value: str | bytes) -> str:
    """A value read by :func:`text_as_stored` as text (U+FFFD for bytes that are not UTF-8)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def json_equals(column: ColumnElement[Any], text: str) -> ColumnElement[bool]:
    return JsonEquals(column, text)


def append_error(error: ColumnElement[Any], now: Any, *, expired: bool) -> ColumnElement[Any]:
    return AppendError(error, now, expired=expired)


def has_response_url(items: ColumnElement[Any]) -> ColumnElement[bool]:
    return HasResponseUrl(items)


def has_kind(items: ColumnElement[Any], kind: str) -> ColumnElement[bool]:
    return HasKind(items, sa.bindparam("kind", kind, type_=sa.String))


def state_in(*states: TaskState) -> ColumnElement[bool]:
    """``state IN ('a', 'b')`` with the states inlined, so the planner can use the partial
    indexes (whose predicates name the states as constants)."""
    if len(states) == 1:
        return tasks.c.state == state_literal(states[0])
    return tasks.c.state.in_([state_literal(s) for s in states])


def state_literal(state: TaskState) -> ColumnElement[Any]:
    return sa.literal_column(f"'{state.value}'")


def lease_pairs(name: str) -> sa.Subquery:
    """``(id, lease)`` rows of the JSON list of ``[id, lease]`` pairs in ``:name``."""
    return json_rows(name, id="text", lease="text")


def under_leases(name: str) -> ColumnElement[bool]:
    """Processing tasks held by the leases in ``:name``, a JSON list of [id, lease] pairs
    (the UPDATE reads them ``FROM`` :func:`lease_pairs`)."""
    claims = lease_pairs(name)
    return sa.and_(
        tasks.c.id == claims.c.id,
        tasks.c.lease_id == claims.c.lease,
        state_in(TaskState.PROCESSING),
    )


def lease_length(seconds: float | None, default_s: float) -> Any:
    """A lease's length: ``seconds`` when given, else the task's own visibility timeout or
    ``default_s``."""
    if seconds is not None:
        return seconds
    return sa.func.coalesce(tasks.c.visibility_timeout, default_s)


# Each backend's spelling of the constructs above, registered on import.
from worker.storage.postgres import sql as _postgres_sql  # noqa: E402
from worker.storage.sqlite import sql as _sqlite_sql  # noqa: E402

SPELLINGS = (_sqlite_sql, _postgres_sql)

"""How SQLite spells the constructs of :mod:`worker.storage.sql` (JSON1 functions)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler

from worker.storage import sql

_DIALECT = "sqlite"


@compiles(sql.JsonValues, _DIALECT)
def _values(element: sql.JsonValues, compiler: SQLCompiler, **kw: Any) -> str:
    return f"SELECT value FROM json_each({compiler.process(element.param, **kw)})"


@compiles(sql.JsonRows, _DIALECT)
def _rows(element: sql.JsonRows, compiler: SQLCompiler, **kw: Any) -> str:
    fields = ", ".join(
        f"json_extract(value, '$[{index}]') AS {name}"
        for index, (name, _kind) in enumerate(element.fields)
    )
    return f"SELECT {fields} FROM json_each({compiler.process(element.param, **kw)})"


@compiles(sql.JsonPairs, _DIALECT)
def _pairs(element: sql.JsonPairs, compiler: SQLCompiler, **kw: Any) -> str:
    # json_each of an object yields key and value without a json_extract per field.
    return (
        f"SELECT key AS id, value AS lease FROM json_each({compiler.process(element.param, **kw)})"
    )


@compiles(sql.Greatest, _DIALECT)
def _greatest(element: sql.Greatest, compiler: SQLCompiler, **kw: Any) -> str:
    return f"max({compiler.process(element.clause_expr.element, **kw)})"


@compiles(sql.AllNull, _DIALECT)
def _all_null(element: sql.AllNull, compiler: SQLCompiler, **kw: Any) -> str:
    # ``coalesce(a, b, ...) IS NULL``, not ``a IS NULL AND b IS NULL``: SQLite from 3.38
    # (3.40.1 here) answers ``column IS NULL`` wrongly, false for a NULL, in an UPDATE's
    # RETURNING on a table with NOT NULL columns (an optimisation consults the wrong column's
    # constraint); the claim's fast path depends on this, and a test pins that plain tasks
    # take it.
    columns = [compiler.process(column, **kw) for column in element.columns]
    if len(columns) == 1:
        columns.append("NULL")
    return f"coalesce({', '.join(columns)}) IS NULL"


@compiles(sql.TextAsStored, _DIALECT)
def _text_as_stored(element: sql.TextAsStored, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({compiler.process(element.column, **kw)} AS BLOB)"


@compiles(sql.NotIndexed, _DIALECT)
def _not_indexed(element: sql.NotIndexed, compiler: SQLCompiler, **kw: Any) -> str:
    return f"+{compiler.process(element.column, **kw)}"


@compiles(sql.JsonEquals, _DIALECT)
def _json_equals(element: sql.JsonEquals, compiler: SQLCompiler, **kw: Any) -> str:
    # JSON columns hold text here: compare the text (as the row codec writes it).
    return f"{compiler.process(element.column, **kw)} = '{element.text}'"


@compiles(sql.AppendError, _DIALECT)
def _append_error(element: sql.AppendError, compiler: SQLCompiler, **kw: Any) -> str:
    error = compiler.process(element.error, **kw)
    at = compiler.process(element.at, **kw)
    expired = "true" if element.expired else "false"
    entry = (
        f"json_object('attempt', tasks.attempt_count, 'error', {error}, 'at', {at}, "
        f"'expired', json('{expired}'), 'worker', tasks.worker_id)"
    )
    return f"json_insert(tasks.errors, '$[#]', {entry})"


@compiles(sql.HasResponseUrl, _DIALECT)
def _has_response_url(element: sql.HasResponseUrl, compiler: SQLCompiler, **kw: Any) -> str:
    # The row codec writes items compactly, so a URL's key is always spelled this way.
    return f'instr({compiler.process(element.items, **kw)}, \'"response_url":"\') > 0'


@compiles(sql.HasKind, _DIALECT)
def _has_kind(element: sql.HasKind, compiler: SQLCompiler, **kw: Any) -> str:
    items = compiler.process(element.items, **kw)
    kind = compiler.process(element.kind, **kw)
    return (
        f"EXISTS (SELECT 1 FROM json_each({items}) AS item "
        f"WHERE json_extract(item.value, '$.kind') = {kind})"
    )

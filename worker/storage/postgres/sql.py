"""How PostgreSQL spells the constructs of :mod:`worker.storage.sql` (jsonb functions)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler

from worker.storage import sql

_DIALECT = "postgresql"

_CASTS = {"text": "e->>{i}", "float": "(e->>{i})::float8", "int": "(e->>{i})::bigint",
          "json": "(e->>{i})::json"}  # fmt: skip


def _param(element: sql.JsonValues | sql.JsonRows | sql.JsonPairs, compiler: SQLCompiler,
           **kw: Any) -> str:  # fmt: skip
    return f"CAST({compiler.process(element.param, **kw)} AS jsonb)"


@compiles(sql.JsonValues, _DIALECT)
def _values(element: sql.JsonValues, compiler: SQLCompiler, **kw: Any) -> str:
    return f"SELECT jsonb_array_elements_text({_param(element, compiler, **kw)})"


@compiles(sql.JsonRows, _DIALECT)
def _rows(element: sql.JsonRows, compiler: SQLCompiler, **kw: Any) -> str:
    fields = ", ".join(
        f"{_CASTS[kind].format(i=index)} AS {name}"
        for index, (name, kind) in enumerate(element.fields)
    )
    return f"SELECT {fields} FROM jsonb_array_elements({_param(element, compiler, **kw)}) AS e"


@compiles(sql.JsonPairs, _DIALECT)
def _pairs(element: sql.JsonPairs, compiler: SQLCompiler, **kw: Any) -> str:
    return (
        f"SELECT key AS id, value AS lease FROM jsonb_each_text({_param(element, compiler, **kw)})"
    )


@compiles(sql.Greatest, _DIALECT)
def _greatest(element: sql.Greatest, compiler: SQLCompiler, **kw: Any) -> str:
    return f"greatest({compiler.process(element.clause_expr.element, **kw)})"


@compiles(sql.AllNull, _DIALECT)
def _all_null(element: sql.AllNull, compiler: SQLCompiler, **kw: Any) -> str:
    return " AND ".join(f"{compiler.process(c, **kw)} IS NULL" for c in element.columns)


@compiles(sql.TextAsStored, _DIALECT)
def _text_as_stored(element: sql.TextAsStored, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.column, **kw)  # the server stores only valid text


@compiles(sql.NotIndexed, _DIALECT)
def _not_indexed(element: sql.NotIndexed, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.column, **kw)


@compiles(sql.JsonEquals, _DIALECT)
def _json_equals(element: sql.JsonEquals, compiler: SQLCompiler, **kw: Any) -> str:
    # json has no equality; its text is what was written (jsonb's is its own rendering,
    # which for the empty list and object is the same).
    return f"CAST({compiler.process(element.column, **kw)} AS text) = '{element.text}'"


@compiles(sql.AppendError, _DIALECT)
def _append_error(element: sql.AppendError, compiler: SQLCompiler, **kw: Any) -> str:
    error = compiler.process(element.error, **kw)
    at = compiler.process(element.at, **kw)
    expired = "true" if element.expired else "false"
    entry = (
        f"jsonb_build_object('attempt', tasks.attempt_count, 'error', {error}::text, "
        f"'at', {at}::float8, 'expired', {expired}, 'worker', tasks.worker_id)"
    )
    return f"tasks.errors || jsonb_build_array({entry})"


@compiles(sql.HasResponseUrl, _DIALECT)
def _has_response_url(element: sql.HasResponseUrl, compiler: SQLCompiler, **kw: Any) -> str:
    items = compiler.process(element.items, **kw)
    return f"jsonb_path_exists({items}::jsonb, '$[*].response_url ? (@.type() == \"string\")')"


@compiles(sql.HasKind, _DIALECT)
def _has_kind(element: sql.HasKind, compiler: SQLCompiler, **kw: Any) -> str:
    items = compiler.process(element.items, **kw)
    kind = compiler.process(element.kind, **kw)
    return f"{items}::jsonb @> jsonb_build_array(jsonb_build_object('kind', CAST({kind} AS text)))"

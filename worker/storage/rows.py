"""Rows become tasks, and tasks rows, here and nowhere else.

Rows arrive as plain tuples in table column order (:data:`ROW_COLUMNS`) with JSON columns
still as text: the hot path skips SQLAlchemy's per-column type processing, and the JSON
that is almost always empty (``[]``, ``{}``) is not parsed at all.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterator, Sequence
from typing import Any, overload

import sqlalchemy as sa
from pydantic import BaseModel
from pydantic_core import PydanticSerializationError

from worker.core import kinds
from worker.core.models import (
    Task,
    TaskItem,
)
from worker.core.states import TaskState
from worker.core.storable import MAX_JSON_DEPTH, check_json_text, check_text, json_text
from worker.storage.schema import tasks
from worker.storage.statements import INSERT_COLUMNS, PLAIN_INSERT_COLUMNS

#: Table columns in order: what ``RETURNING *`` and :data:`RAW_COLUMNS` yield.
ROW_COLUMNS = tuple(column.name for column in tasks.c)
_JSON_COLUMNS = {c.key for c in tasks.c if isinstance(c.type, sa.JSON)}
#: Every column, JSON ones as raw text, for SELECTs whose rows go to :func:`task_from_values`.
RAW_COLUMNS = tuple(
    sa.type_coerce(c, sa.Text).label(c.name) if c.key in _JSON_COLUMNS else c for c in tasks.c
)


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


#: Each request model's kind name and serializer, looked up once per batch (the registry
#: and the models do not change within one).
Encoders = dict[type[Any], tuple[str, Callable[[Any], bytes]]]


def encoder(model: type[Any], encoders: Encoders) -> tuple[str, Callable[[Any], bytes]]:
    """``model``'s kind name and JSON serializer, from ``encoders`` or looked up into it;
    :class:`~worker.core.errors.UnknownRequestKindError` for a model of no registered kind."""
    known = encoders.get(model)
    if known is None:
        known = encoders[model] = (kinds.kind_of(model), model.__pydantic_serializer__.to_json)
    return known


def items_json(items: list[TaskItem], encoders: Encoders | None = None) -> str:
    """The ``items`` column's JSON text: each item's kind name, request and response URL.

    Kind names are letters, digits, ``-``, ``_`` and ``.`` (the registry checks), so they
    need no escaping. Requests go through pydantic-core's serializer directly: ``model_dump_json``
    with its defaults, without the wrapper (a test pins the two equal). A request or URL
    the database cannot store raises ``ValueError`` naming the item (``items[1].request
    ...``; see :mod:`worker.core.storable`). ``encoders`` is a batch's (see
    :data:`Encoders`).
    """
    known = {} if encoders is None else encoders
    parts = []
    for index, item in enumerate(items):
        request = item.request
        kind, to_json = encoder(type(request), known)
        try:
            body = to_json(request).decode()
        except PydanticSerializationError as exc:  # a lone surrogate, for one
            raise ValueError(f"items[{index}].request cannot be stored: {exc}") from exc
        # The serializer wrote UTF-8; only the depth is left to check, and only a text this
        # long can be too deep (this runs for every task of a bulk enqueue).
        if len(body) > _DEEP_ENOUGH:
            check_json_text(body, f"items[{index}].request")
        url = item.response_url
        if url is not None and not url.isascii():
            check_text(url, f"items[{index}].response_url")
        parts.append(
            f'{{"kind":"{kind}","request":{body},'
            f'"response_url":{"null" if url is None else _dumps(url)}}}'
        )
    return f"[{parts[0]}]" if len(parts) == 1 else f"[{','.join(parts)}]"


#: JSON text nested deeper than the limit has at least two brackets per level.
_DEEP_ENOUGH = 2 * MAX_JSON_DEPTH


def outcomes_json(results: Sequence[Any]) -> str:
    """The ``outcomes`` column's JSON text for per-item results.

    Raises ``ValueError`` naming the result (``results[2] ...``) for one the database cannot
    store (:func:`worker.core.storable.json_text`: not JSON, NaN and infinities included; text
    that is not UTF-8; nested deeper than :data:`~worker.core.storable.MAX_JSON_DEPTH`).
    """
    try:
        outcomes = [{"result": result, "error": None} for result in results]
        return json_text(outcomes, "results", wrapped=2)
    except ValueError:
        for index, result in enumerate(results):
            json_text(result, f"results[{index}]")
        raise


_PENDING = TaskState.PENDING.value


#: One task's values for the bulk insert, in :data:`INSERT_COLUMNS` order (a test pins it),
#: or :data:`PLAIN_INSERT_COLUMNS` for a task that sets none of the optional ones.
#: A plain tuple on purpose: sqlite3 binds a tuple subclass, such as a ``NamedTuple``, value
#: by value through the sequence protocol, which made a 50,000-row insert ~20 % slower.
InsertRow = tuple[Any, ...]
#: A row of :data:`PLAIN_INSERT_COLUMNS`'s width, and one of :data:`INSERT_COLUMNS`'s.
PLAIN_WIDTH, FULL_WIDTH = len(PLAIN_INSERT_COLUMNS), len(INSERT_COLUMNS)
#: Where a row's fields are, for the code that reads them back (store, dependencies).
ROW_ID, ROW_QUEUE, ROW_KEY, ROW_DEPENDS_ON = (
    INSERT_COLUMNS.index(name) for name in ("id", "queue", "idempotency_key", "depends_on")
)


#: The task fields :func:`insert_values` reads but for the id and the metadata (a test pins
#: the list), and their values (``row_fields(task.__dict__)``): tasks that hold equal values
#: in all of them, and the same metadata, have rows that differ only in the id and the
#: items. Each of these fields holds one type (pydantic converts), so equal values store
#: alike; metadata's JSON may not (``1 == 1.0 == True``).
ROW_FIELDS = (
    "queue", "priority", "schedule_at", "max_attempts", "visibility_timeout", "name",
    "idempotency_key", "created_at", "updated_at", "timeout_s", "retry_policy", "held",
    "depends_on", "resources", "on_success", "on_failure",
)  # fmt: skip
row_fields = operator.itemgetter(*ROW_FIELDS)


def insert_values(task: Task, items: str) -> InsertRow:
    """The bulk insert's values for ``task`` (JSON columns encoded; ``items`` already is).

    Raises ``ValueError`` naming the field (``metadata ...``) for a value the database
    cannot store (see :mod:`worker.core.storable`).
    """
    fields = task.__dict__  # plain reads: this runs for every task of a bulk enqueue
    metadata, policy, depends_on = fields["metadata"], fields["retry_policy"], fields["depends_on"]
    name, key = fields["name"], fields["idempotency_key"]
    if name is not None and (not name.isascii() or "\x00" in name):
        check_text(name, "name", column=True)
    if key is not None and (not key.isascii() or "\x00" in key):
        check_text(key, "idempotency_key", column=True)
    resources = fields["resources"].__dict__
    values = (
        fields["id"], fields["queue"], _PENDING, fields["priority"], fields["schedule_at"], 0,
        fields["max_attempts"], fields["visibility_timeout"], 0, "[]", items, name,
        json_text(metadata, "metadata") if metadata else "{}", key,
        fields["created_at"], fields["updated_at"], fields["timeout_s"],
        None if policy is None else policy.model_dump_json(), fields["held"], 0,
        _dumps(depends_on) if depends_on else None,
        resources["memory_bytes"], resources["cpu"], resources["gpu"],
    )  # fmt: skip
    on_success, on_failure = fields["on_success"], fields["on_failure"]
    if on_success is None and on_failure is None:
        return values
    return (*values, on_success, on_failure)


_ROW_ITEMS = INSERT_COLUMNS.index("items")
assert ROW_ID == 0 < _ROW_ITEMS  # uniform_rows builds rows in this order


def uniform_rows(
    template: InsertRow, ids: Sequence[str], requests: Sequence[Any], response_url: str | None
) -> UniformRows:
    """Rows of tasks that are all ``template`` (:func:`insert_values` of a task) but for
    their id and their one item: ``requests[i]`` with ``response_url``, as
    :func:`items_json` encodes it. The fast path of ``submit_many``: each request costs its
    serialization and a tuple.

    Raises :class:`~worker.core.errors.UnknownRequestKindError` for a request of no
    registered kind, ``TypeError`` for one that is no pydantic model, and ``ValueError``
    naming it (``requests[3] ...``) for one the database cannot store.
    """
    if response_url is not None and not response_url.isascii():
        check_text(response_url, "response_url")
    url = "null" if response_url is None else _dumps(response_url)
    encoders: Encoders = {}
    texts: list[str] = []
    append = texts.append
    for index, request in enumerate(requests):
        model = type(request)
        if model not in encoders and not isinstance(request, BaseModel):
            raise TypeError(
                f"requests[{index}] must be an instance of a registered request model, "
                f"got {model.__name__}"
            )
        kind, to_json = encoder(model, encoders)
        try:
            body = to_json(request).decode()
        except PydanticSerializationError as exc:
            raise ValueError(f"requests[{index}] cannot be stored: {exc}") from exc
        if len(body) > _DEEP_ENOUGH:
            check_json_text(body, f"requests[{index}]")
        append(f'[{{"kind":"{kind}","request":{body},"response_url":{url}}}]')
    if len(texts) != len(ids):
        raise ValueError(f"{len(ids)} ids for {len(texts)} requests")
    return UniformRows(template, ids, texts)


class UniformRows(Sequence[InsertRow]):
    """The rows of :func:`uniform_rows`: ``template``'s values but for each row's id
    (``ids``) and items column (``items``), which the insert's checks and the bulk loads
    read instead of every row (:meth:`varying`). A row is built when it is read (building
    all 50,000 of a ``submit_many`` took 22 ms, a twentieth of its call, and the multi-row
    insert on SQLite reads only the first)."""

    def __init__(self, template: InsertRow, ids: Sequence[str], items: list[str]) -> None:
        self.template = template
        self.ids = ids
        self.items = items
        self._before, self._after = template[1:_ROW_ITEMS], template[_ROW_ITEMS + 1 :]

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, index: int) -> InsertRow: ...

    @overload
    def __getitem__(self, index: slice) -> list[InsertRow]: ...

    def __getitem__(self, index: int | slice) -> InsertRow | list[InsertRow]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return (self.ids[index], *self._before, self.items[index], *self._after)

    def __iter__(self) -> Iterator[InsertRow]:
        before, after = self._before, self._after
        for task_id, text in zip(self.ids, self.items, strict=True):
            yield (task_id, *before, text, *after)

    def varying(self) -> dict[int, Sequence[Any]]:
        """The columns that differ from row to row, by position: the ids and the items."""
        return {ROW_ID: self.ids, _ROW_ITEMS: self.items}

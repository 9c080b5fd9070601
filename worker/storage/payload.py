"""Stored items become :class:`TaskItem` objects here: the requests of a claimed task.

The ``items`` column holds ``[{"kind": ..., "request": {...}, "response_url": ...}, ...]``.
The fast path parses the whole text in one pydantic-core call, with a discriminated union of
the registered kinds (``kind`` picks the request model), rebuilt whenever the registry
changes. Text it cannot take (an unknown kind, a request that no longer validates) goes the
slow way, item by item, which names what is wrong: :class:`PayloadError`, or with
``lenient`` an :class:`UnloadedRequest` in place of the request.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar, Union, cast

from pydantic import BaseModel, Field, PydanticUserError, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from worker.core import kinds
from worker.core.errors import UnknownRequestKindError
from worker.core.models import TaskItem, UnloadedRequest

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
_set = object.__setattr__
#: A model's slots, set through their descriptors (a fifth cheaper than ``_set`` by name):
#: ``set_fields_set(instance, names)``, and the same for ``extra`` and ``private``.
set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def trusted(model: type[M], fields: dict[str, Any], fields_set: set[str] | None = None) -> M:
    """``model.model_construct(**fields)`` for data read back from our own rows.

    Every field is given and none has an alias, so pydantic's per-field loop over defaults
    and aliases (the bulk of a claim's CPU time) has nothing to do; this sets what
    ``model_construct`` sets. A test pins the equivalence. ``fields_set`` may be one set
    shared by many instances when it names every field: pydantic only ever adds to it.
    """
    instance = model.__new__(model)
    _set(instance, "__dict__", fields)
    set_fields_set(instance, set(fields) if fields_set is None else fields_set)
    set_extra(instance, None)
    set_private(instance, None)
    return instance


class PayloadError(Exception):
    """A stored request cannot be loaded: unknown kind, or it no longer validates."""


_ITEM_FIELDS = set(TaskItem.model_fields)


def _make_item(request: BaseModel, response_url: Any, outcome: Any) -> TaskItem:
    outcome = outcome if isinstance(outcome, dict) else {}
    return _new_item(request, response_url, outcome.get("result"), outcome.get("error"))


def _new_item(request: BaseModel, response_url: Any, result: Any, error: Any) -> TaskItem:
    fields = {"request": request, "response_url": response_url, "result": result, "error": error}
    return trusted(TaskItem, fields, _ITEM_FIELDS)


class _Parser:
    """The union adapter of the registered kinds, rebuilt when the registry changes."""

    def __init__(self) -> None:
        self._version = -1
        self._adapter: TypeAdapter[list[dict[str, Any]]] | None = None
        self._validate: Callable[[str], list[dict[str, Any]]] | None = None
        self._lock = threading.Lock()

    def parse(self, text: str) -> list[dict[str, Any]] | None:
        """The stored items, requests built; None when the text needs the slow path."""
        if kinds.registry.version != self._version:
            with self._lock:
                version, by_name = kinds.registry.snapshot()
                try:
                    self._adapter = _union_adapter(by_name)
                except PydanticUserError as error:
                    # Loading still works, item by item; only the one-call parse is lost.
                    log.error(
                        "request kinds %s cannot share one parser: %s", sorted(by_name), error
                    )
                    self._adapter = None
                # pydantic-core's own entry point: TypeAdapter's wrapper costs as much again.
                self._validate = (
                    None if self._adapter is None else self._adapter.validator.validate_json
                )
                self._version = version
        if self._validate is None:
            return None
        try:
            return self._validate(text)
        except ValidationError:
            return None


def _union_adapter(by_name: dict[str, type[BaseModel]]) -> TypeAdapter[list[dict[str, Any]]] | None:
    if not by_name:
        return None
    typed_dict = cast(Any, TypedDict)  # pydantic needs typing_extensions' on Python < 3.12
    shapes = tuple(
        typed_dict(
            f"Stored_{index}",
            {"kind": Literal[name], "request": model, "response_url": str | None},
        )
        for index, (name, model) in enumerate(sorted(by_name.items()))
    )
    item = shapes[0] if len(shapes) == 1 else Annotated[Union[shapes], Field(discriminator="kind")]  # noqa: UP007
    return TypeAdapter(list[item])  # type: ignore[valid-type]


_parser = _Parser()


def items_from_json(text: str, outcomes: list[Any], *, lenient: bool) -> list[TaskItem]:
    """The task items stored as ``text`` (``outcomes``: per-item results, may be shorter)."""
    parsed = _parser.parse(text)
    if parsed and not outcomes:  # a task's first run: no results yet (the common case)
        return [_new_item(raw["request"], raw["response_url"], None, None) for raw in parsed]
    if parsed:
        return [
            _make_item(
                raw["request"],
                raw["response_url"],
                outcomes[index] if index < len(outcomes) else None,
            )
            for index, raw in enumerate(parsed)
        ]
    # Not taken by the fast path: item by item, to say precisely what is wrong.
    raw_items = json.loads(text)
    if not isinstance(raw_items, list) or not raw_items:
        raise PayloadError(f"stored items are not a non-empty list: {raw_items!r:.200}")
    return [
        _item(raw, outcomes[index] if index < len(outcomes) else None, index, lenient=lenient)
        for index, raw in enumerate(raw_items)
    ]


def _request(raw: Any, index: int) -> BaseModel:
    if not isinstance(raw, dict):
        raise PayloadError(f"item {index}: stored item is not an object: {raw!r:.200}")
    kind = raw.get("kind")
    try:
        model = kinds.model_for(str(kind))
    except UnknownRequestKindError as exc:
        raise PayloadError(f"item {index}: {exc}") from exc
    try:
        return model.model_validate(raw.get("request"))
    except ValidationError as exc:
        raise PayloadError(
            f"item {index}: stored {kind!r} request no longer validates: {exc}"
        ) from exc


def _item(raw: Any, outcome: Any, index: int, *, lenient: bool) -> TaskItem:
    try:
        request = _request(raw, index)
    except PayloadError as exc:
        if not lenient:
            raise
        data = raw.get("request") if isinstance(raw, dict) else raw
        kind = raw.get("kind") if isinstance(raw, dict) else None
        request = UnloadedRequest(kind=str(kind), data=data, problem=str(exc))
    return _make_item(request, raw.get("response_url") if isinstance(raw, dict) else None, outcome)

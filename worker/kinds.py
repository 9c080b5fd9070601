"""The registry of request kinds: which pydantic model a stored ``kind`` name stands for.

A package registers its request models under a kind name, either with the
:func:`register_request_kind` decorator or through the ``worker.request_kinds`` entry point
group, so that a process that never imported the package still loads its tasks::

    [project.entry-points."worker.request_kinds"]
    tts = "tts.requests:TextToSpeechRequest"
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TypeVar

from pydantic import BaseModel

from worker.errors import UnknownRequestKindError

ENTRY_POINT_GROUP = "worker.request_kinds"

log = logging.getLogger(__name__)

M = TypeVar("M", bound=type[BaseModel])

_by_name: dict[str, type[BaseModel]] = {}
_by_model: dict[type[BaseModel], str] = {}
_entry_points_loaded = False
_lock = threading.Lock()


def register_request_kind(name: str) -> Callable[[M], M]:
    """Class decorator: store requests of this model under the kind ``name``."""

    def decorate(model: M) -> M:
        add_request_kind(name, model)
        return model

    return decorate


def add_request_kind(name: str, model: type[BaseModel]) -> None:
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"request kind name must be letters, digits, '-' or '_', got {name!r}")
    with _lock:
        current = _by_name.get(name)
        if current is not None and current is not model:
            raise ValueError(
                f"request kind {name!r} is already registered to "
                f"{current.__module__}.{current.__qualname__}"
            )
        _by_name[name] = model
        _by_model[model] = name


def remove_request_kind(name: str) -> None:
    """Forget a kind (tests use it to simulate a process that lacks a plugin)."""
    with _lock:
        model = _by_name.pop(name, None)
        if model is not None:
            _by_model.pop(model, None)


def kind_of(model: type[BaseModel]) -> str:
    """The kind name a request model is stored under."""
    name = _by_model.get(model)
    if name is None:
        _load_entry_points()
        name = _by_model.get(model)
    if name is None:
        raise UnknownRequestKindError(
            f"{model.__module__}.{model.__qualname__} is not a registered request kind; "
            "decorate it with @worker.register_request_kind('name') or declare it in the "
            f"{ENTRY_POINT_GROUP!r} entry point group"
        )
    return name


def model_for(name: str) -> type[BaseModel]:
    """The request model registered under ``name``."""
    model = _by_name.get(name)
    if model is None:
        _load_entry_points()
        model = _by_name.get(name)
    if model is None:
        known = ", ".join(sorted(_by_name)) or "none"
        raise UnknownRequestKindError(
            f"unknown request kind {name!r} (registered kinds: {known}); install the package "
            f"that provides it, or register it"
        )
    return model


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _by_name:
            continue
        try:
            model = ep.load()
        except ImportError as exc:
            # A broken plugin must not hide the others; the kind stays unknown and says so.
            log.error("request kind %r from %s could not be loaded: %s", ep.name, ep.value, exc)
            continue
        add_request_kind(ep.name, model)
    _entry_points_loaded = True

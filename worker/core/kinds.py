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
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel

from worker.core.errors import UnknownRequestKindError

if TYPE_CHECKING:
    from worker.core.models import Task

ENTRY_POINT_GROUP = "worker.request_kinds"

log = logging.getLogger(__name__)

M = TypeVar("M", bound=type[BaseModel])


class KindRegistry:
    """Kind name <-> request model, filled by decorators and, on a miss, entry points."""

    def __init__(self) -> None:
        self._by_name: dict[str, type[BaseModel]] = {}
        self._by_model: dict[type[BaseModel], str] = {}
        self._entry_points_loaded = False
        self._broken: set[str] = set()  # entry points that failed to import, by kind name
        self._lock = threading.Lock()
        self._version = 0  # bumped on every change, for caches built from the registry

    @property
    def version(self) -> int:
        """Bumped on every change, for caches built from the registry."""
        return self._version

    def snapshot(self) -> tuple[int, dict[str, type[BaseModel]]]:
        """The registry's version and a copy of its kinds."""
        with self._lock:
            return self._version, dict(self._by_name)

    def add(self, name: str, model: type[BaseModel]) -> None:
        if not name or not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
            raise ValueError(
                f"request kind name must be letters, digits, '-', '_' or '.', got {name!r}"
            )
        with self._lock:
            current = self._by_name.get(name)
            if current is not None and current is not model:
                raise ValueError(
                    f"request kind {name!r} is already registered to "
                    f"{current.__module__}.{current.__qualname__}"
                )
            if current is None:
                self._by_name[name] = model
                self._by_model[model] = name
                self._version += 1

    def remove(self, name: str) -> None:
        """Forget a kind (tests use it to play a process that lacks a plugin)."""
        with self._lock:
            model = self._by_name.pop(name, None)
            if model is not None:
                self._by_model.pop(model, None)
            self._entry_points_loaded = False
            self._broken.discard(name)
            self._version += 1

    def kind_of(self, model: type[BaseModel]) -> str:
        name = self._by_model.get(model)
        if name is None:
            self._load_entry_points()
            name = self._by_model.get(model)
        if name is None:
            raise UnknownRequestKindError(
                f"{model.__module__}.{model.__qualname__} is not a registered request kind; "
                "decorate it with @worker.register_request_kind('name') or declare it in the "
                f"{ENTRY_POINT_GROUP!r} entry point group"
            )
        return name

    def model_for(self, name: str) -> type[BaseModel]:
        model = self._by_name.get(name)
        if model is None:  # the entry point of that name first: the other kinds stay unloaded
            self._load_entry_points(name)
            model = self._by_name.get(name)
        if model is None:  # all of them, for the error's list
            self._load_entry_points()
            model = self._by_name.get(name)
        if model is None:
            known = ", ".join(sorted(self._by_name)) or "none"
            raise UnknownRequestKindError(
                f"unknown request kind {name!r} (registered kinds: {known}); install the "
                "package that provides it, or register it"
            )
        return model

    def registered(self) -> dict[str, type[BaseModel]]:
        """Every kind, those of the entry points included, by name (sorted)."""
        self._load_entry_points()
        return dict(sorted(self.snapshot()[1].items()))

    def _load_entry_points(self, name: str | None = None) -> None:
        """Load the group's entry points, or only those named ``name``."""
        if self._entry_points_loaded:
            return
        group = entry_points(group=ENTRY_POINT_GROUP)
        for ep in group if name is None else group.select(name=name):
            if ep.name in self._by_name or ep.name in self._broken:
                continue
            try:
                model = ep.load()
            except ImportError as exc:
                # A broken plugin must not hide the others; its kind stays unknown and says so
                # (once: the full pass after a miss by name does not import it again).
                log.error("request kind %r from %s could not be loaded: %s", ep.name, ep.value, exc)
                self._broken.add(ep.name)
                continue
            self.add(ep.name, model)
        self._entry_points_loaded = name is None


registry = KindRegistry()
kind_of = registry.kind_of
model_for = registry.model_for
registered_kinds = registry.registered
remove_request_kind = registry.remove


def register_request_kind(name: str) -> Callable[[M], M]:
    """Class decorator: store requests of this model under the kind ``name``."""

    def decorate(model: M) -> M:
        registry.add(name, model)
        return model

    return decorate


def task_kinds(task: Task) -> str:
    """The request kinds of a task's items, for people and logs: ``tts`` or ``tts,audio``
    (a request of no registered kind shows as its class name)."""
    names: list[str] = []
    for item in task.items:
        try:
            name = kind_of(type(item.request))
        except UnknownRequestKindError:
            name = type(item.request).__name__
        if name not in names:
            names.append(name)
    return ",".join(names)

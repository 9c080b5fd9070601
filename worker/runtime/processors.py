"""Processors: which handler runs the items of each request kind.

A handler is ``async def handle(item, ctx) -> result`` (a plain ``def`` runs in a thread).
Register one with the decorator, by dotted path, or by importing modules whose decorators
register on the default registry::

    @processor("resize")
    async def resize(item: TaskItem, ctx: TaskContext) -> dict[str, int]: ...

    registry.add("resize", "mypackage.jobs:resize")
    registry.load_modules(["mypackage.jobs"])

The default registry already knows the built-in kinds ``call`` and ``command``.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from typing import Any, TypeVar

from worker.builtins.call import run_call
from worker.builtins.command import run_command
from worker.runtime.outcomes import PermanentError

ENTRY_POINT_GROUP = "worker.processors"

#: ``handler(item, ctx)``, returning (or, when async, resolving to) a JSON value.
Handler = Callable[..., Any]
H = TypeVar("H", bound=Handler)


class ProcessorRegistry:
    """Request kind name -> handler."""

    def __init__(self, *, builtins: bool = True, entry_points: bool = True) -> None:
        self._handlers: dict[str, Handler] = {}
        self._entry_points = entry_points
        self._lock = threading.Lock()
        if builtins:
            self.add("call", run_call)
            self.add("command", run_command)

    def add(self, kind: str, handler: Handler | str, *, replace: bool = False) -> None:
        """Register ``handler`` (a callable or ``"package.module:function"``) for ``kind``.

        A dotted path comes from the program (code, entry points), not from task data, so it
        may name anything (unlike a ``call`` target, see :mod:`worker.builtins.allowlist`).
        """
        if isinstance(handler, str):
            handler = resolve(handler)
        if not callable(handler):
            raise TypeError(f"the handler for {kind!r} must be callable, got {handler!r}")
        with self._lock:
            current = self._handlers.get(kind)
            if current is not None and current is not handler and not replace:
                raise ValueError(
                    f"request kind {kind!r} already has a processor "
                    f"({_name(current)}); pass replace=True to change it"
                )
            self._handlers[kind] = handler

    def processor(self, kind: str) -> Callable[[H], H]:
        """Decorator: ``@registry.processor("kind")``."""

        def register(handler: H) -> H:
            self.add(kind, handler)
            return handler

        return register

    def load_modules(self, modules: Iterable[str]) -> None:
        """Import modules whose ``@processor`` decorators register handlers."""
        for module in modules:
            importlib.import_module(module)

    def get(self, kind: str) -> Handler:
        handler = self._handlers.get(kind) or self._from_entry_point(kind)
        if handler is None:
            known = ", ".join(sorted(self._handlers)) or "none"
            raise PermanentError(
                f"no processor for request kind {kind!r} in this worker (it has: {known})"
            )
        return handler

    def _from_entry_point(self, kind: str) -> Handler | None:
        """A handler a package declares in the ``worker.processors`` entry-point group.

        ``[project.entry-points."worker.processors"] tts = "tts.processor:synthesize"``
        lets a worker that never imported the package run its kind.
        """
        if not self._entry_points:
            return None
        for ep in entry_points(group=ENTRY_POINT_GROUP, name=kind):
            self.add(kind, ep.load())
            return self._handlers[kind]
        return None

    def kinds(self) -> list[str]:
        return sorted(self._handlers)

    def __contains__(self, kind: object) -> bool:
        return kind in self._handlers


def resolve(target: str) -> Any:
    """The object ``"package.module:attribute.path"`` names (imports the module). Trusted
    paths only: nothing is checked but that the names exist."""
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"expected 'package.module:function', got {target!r}")
    found: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise AttributeError(
                f"{target!r}: module {module_name!r} has no {attribute!r}"
            ) from None
    return found


def _name(handler: Handler) -> str:
    module = getattr(handler, "__module__", "?")
    return f"{module}:{getattr(handler, '__qualname__', repr(handler))}"


#: The registry ``@processor`` fills and workers use unless given another.
registry = ProcessorRegistry()


def processor(kind: str) -> Callable[[H], H]:
    """Decorator: run items of request kind ``kind`` with this function (default registry)."""
    return registry.processor(kind)

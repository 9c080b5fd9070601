"""What a ``call`` task may call, and a task's callbacks: the allow-list's rule
(``QUEUE_CALL_ALLOWED_MODULES``; ``QUEUE_CALLBACK_ALLOWED_MODULES`` for callbacks).

A target is ``"module:name.path"``. The module must be listed by its exact name: allowing
``pkg`` does not allow ``pkg.sub`` (a submodule needs its own entry). In an allowed module
``m``, the path may name:

- ``m:name``, where ``name`` is a function or class defined in ``m`` (its ``__module__`` is
  ``m``) or is listed in ``m.__all__`` (an explicit export, which may come from elsewhere);
- ``m:Class.name`` (and ``m:Class.Inner.name``, ...), where each class on the way is defined
  in ``m``, and ``name`` is in the namespace of the class or of a base class defined in ``m``
  and is itself a function, method or class defined in ``m``.

Everything else is refused, naming the target and the reason: a name that leads out of the
module (a module it imported, a function or class it imported but does not export, a method
inherited from a class defined elsewhere), any name starting with ``__`` (``__globals__``,
``__class__``, ``__builtins__``, ...), and any step through something that is not a class of
``m`` (an instance, a function, a module).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from worker.runtime.outcomes import PermanentError


class CallRefusedError(PermanentError):
    """A ``call`` target (or a callback) the allow-list does not permit (the task is
    discarded; a callback is recorded failed)."""

    def __init__(self, target: str, why: str, *, what: str = "call target") -> None:
        self.target = target
        self.why = why
        super().__init__(f"{what} {target!r} refused: {why}")


@dataclass(frozen=True, slots=True)
class AllowList:
    """Which modules a kind of task data may name, and the setting that lists them."""

    modules: Collection[str]
    #: How the setting is named in refusals, and what a name's target is called.
    setting: str = "QUEUE_CALL_ALLOWED_MODULES (call_allowed_modules)"
    purpose: str = "to let call tasks run its functions"
    what: str = "call target"


def check_module(target: str, module: str, allowed: Collection[str] | AllowList) -> None:
    """Refuse ``target`` unless ``module`` is listed by its exact name."""
    rules = allowed if isinstance(allowed, AllowList) else AllowList(allowed)
    if module in rules.modules:
        return
    why = f"module {module!r} is not allowed: add it to {rules.setting} {rules.purpose}"
    parents = [p for p in rules.modules if module.startswith(p + ".")]
    if parents:
        why += f"; allowing {parents[0]!r} does not allow its submodules: list {module!r} too"
    raise CallRefusedError(target, why, what=rules.what)


def allowed_callable(target: str, allowed: Collection[str] | AllowList) -> Any:
    """The callable ``target`` names, if the allow-list permits it (see the module docstring);
    otherwise :class:`CallRefusedError`. Imports the module, and only when it is allowed."""
    rules = allowed if isinstance(allowed, AllowList) else AllowList(allowed)
    try:
        return _allowed_callable(target, rules)
    except CallRefusedError as error:
        if rules.what == "call target":
            raise
        raise CallRefusedError(target, error.why, what=rules.what) from error


def _allowed_callable(target: str, rules: AllowList) -> Any:
    module_name, sep, path = target.partition(":")
    names = path.split(".")
    if not sep or not module_name or not all(names):
        raise CallRefusedError(target, "expected 'package.module:function'")
    check_module(target, module_name, rules)
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise CallRefusedError(target, f"cannot import {module_name!r}: {error}") from error
    found: Any = module
    for index, name in enumerate(names):
        where = f"{module_name}:{'.'.join(names[:index])}"
        if name.startswith("__"):
            raise CallRefusedError(target, f"{name!r}: names starting with '__' are never called")
        if index == 0:
            found = _from_module(target, module, name)
        else:
            found = _from_class(target, found, where, name, module_name)
    if not callable(found):
        raise CallRefusedError(target, f"{path!r} is not callable")
    return found


def _from_module(target: str, module: Any, name: str) -> Any:
    module_name = module.__name__
    try:
        found = getattr(module, name)
    except AttributeError:
        raise CallRefusedError(target, f"module {module_name!r} has no {name!r}") from None
    exported = getattr(module, "__all__", ())
    if isinstance(exported, list | tuple) and name in exported:
        return found
    if inspect.ismodule(found):
        raise CallRefusedError(
            target,
            f"{name!r} is a module ({found.__name__!r}) that {module_name!r} imports; "
            "a module must be allowed by its own entry",
        )
    if not (inspect.isroutine(found) or inspect.isclass(found)):
        raise CallRefusedError(
            target,
            f"{name!r} is {_a(found)} object, not a function or class of "
            f"{module_name!r} (nor listed in its __all__)",
        )
    if _module_of(found) != module_name:
        raise CallRefusedError(
            target,
            f"{name!r} is defined in {_module_of(found)!r}, not in {module_name!r} "
            "(nor listed in its __all__)",
        )
    return found


def _from_class(target: str, owner: Any, where: str, name: str, module_name: str) -> Any:
    if not inspect.isclass(owner):
        raise CallRefusedError(
            target, f"{where!r} is not a class: only a class's attributes can follow it"
        )
    if owner.__module__ != module_name:
        raise CallRefusedError(
            target,
            f"{where!r} is defined in {owner.__module__!r}, not in {module_name!r}: "
            "only the attributes of the module's own classes can be called",
        )
    holder = next((k for k in owner.__mro__ if name in vars(k)), None)
    if holder is None:
        raise CallRefusedError(target, f"{where!r} defines no {name!r}")
    if holder.__module__ != module_name:
        raise CallRefusedError(
            target,
            f"{name!r} is inherited from {holder.__module__}.{holder.__qualname__}, "
            f"not defined in {module_name!r}",
        )
    found = getattr(owner, name)
    if not (inspect.isroutine(found) or inspect.isclass(found)):
        raise CallRefusedError(target, f"{where}.{name} is {_a(found)}, not a method or class")
    if _module_of(found) != module_name:
        raise CallRefusedError(
            target, f"{where}.{name} is defined in {_module_of(found)!r}, not in {module_name!r}"
        )
    return found


def _a(value: Any) -> str:
    kind = type(value).__name__
    return f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind}"


def _module_of(value: Any) -> str | None:
    module = getattr(value, "__module__", None)
    return module if isinstance(module, str) else None

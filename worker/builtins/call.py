"""The ``call`` handler: run an allow-listed Python callable named ``"package.module:function"``."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
from typing import TYPE_CHECKING, Any

from pydantic import JsonValue

from worker.builtins.requests import CallRequest
from worker.models import TaskItem
from worker.outcomes import PermanentError

if TYPE_CHECKING:
    from worker.context import TaskContext


def resolve(target: str) -> Any:
    """The object ``"package.module:attribute.path"`` names (imports the module)."""
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


async def run_call(item: TaskItem, ctx: TaskContext) -> JsonValue:
    request = item.request
    if not isinstance(request, CallRequest):
        raise PermanentError(f"the call processor got a {type(request).__name__}")
    module = request.module
    if module not in ctx.config.call_allowed_modules:
        raise PermanentError(
            f"module {module!r} may not be called: add it to QUEUE_CALL_ALLOWED_MODULES "
            "(call_allowed_modules) to allow call tasks to run its functions"
        )
    try:
        function = resolve(request.target)
    except (ImportError, AttributeError) as exc:
        raise PermanentError(f"cannot load {request.target!r}: {exc}") from exc
    if not callable(function):
        raise PermanentError(f"{request.target!r} is not callable")
    if inspect.iscoroutinefunction(function):
        result = await function(*request.args, **request.kwargs)
    else:
        result = await asyncio.to_thread(function, *request.args, **request.kwargs)
        if inspect.isawaitable(result):
            result = await result
    try:
        json.dumps(result)
    except (TypeError, ValueError) as exc:
        raise PermanentError(
            f"{request.target!r} returned a value that is not JSON: {exc}"
        ) from exc
    return result  # type: ignore[no-any-return]

"""The ``call`` handler: run an allow-listed Python callable named ``"package.module:function"``.

What the allow-list permits is :mod:`worker.builtins.allowlist`'s to say.
"""

from __future__ import annotations

import inspect
import json
from typing import TYPE_CHECKING

from pydantic import JsonValue

from worker.builtins.allowlist import allowed_callable
from worker.builtins.requests import CallRequest
from worker.core.models import TaskItem
from worker.runtime.outcomes import PermanentError
from worker.runtime.threads import in_thread

if TYPE_CHECKING:
    from worker.runtime.context import TaskContext


async def run_call(item: TaskItem, ctx: TaskContext) -> JsonValue:
    request = item.request
    if not isinstance(request, CallRequest):
        raise PermanentError(f"the call processor got a {type(request).__name__}")
    function = allowed_callable(request.target, ctx.config.call_allowed_modules)
    if inspect.iscoroutinefunction(function):
        result = await function(*request.args, **request.kwargs)
    else:
        result = await in_thread(function, *request.args, **request.kwargs)
        if inspect.isawaitable(result):
            result = await result
    try:
        json.dumps(result)
    except (TypeError, ValueError) as exc:
        raise PermanentError(
            f"{request.target!r} returned a value that is not JSON: {exc}"
        ) from exc
    return result  # type: ignore[no-any-return]

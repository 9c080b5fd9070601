"""pydantic's validation errors in the words a user reads, for every edge that shows them
(``wq``, the HTTP API, the dashboard's form, the queue's own ``InvalidInputError``).

pydantic prefixes what a validator raised (``Value error, text must ...``) and words a
discriminated union's miss after its implementation (``Input tag 'x' found using 'op' does
not match any of the expected tags: ...``); :func:`error_message` says those plainly and
leaves the rest as pydantic words it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: The prefixes pydantic gives the message of an exception a validator raised.
_RAISED = ("Value error, ", "Assertion failed, ")


def error_message(error: Mapping[str, Any]) -> str:
    """The message of one of ``ValidationError.errors()``."""
    message = str(error.get("msg", "invalid"))
    kind = error.get("type")
    context = error.get("ctx") or {}
    if kind == "union_tag_invalid":
        name = str(context.get("discriminator", "the tag")).strip("'")
        return f"{name} {context.get('tag')!r} is none of {context.get('expected_tags')}"
    if kind == "string_unicode":  # pydantic's words for a text holding a lone surrogate
        return "holds a byte that is not UTF-8 (text from a terminal or file in another encoding?)"
    if kind == "union_tag_not_found":
        name = str(context.get("discriminator", "the tag")).strip("'")
        return f"{name} is missing"
    for prefix in _RAISED:
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message

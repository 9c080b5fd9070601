"""What the database can store: text that is valid UTF-8, and JSON no deeper than a limit.

Python strings may hold lone surrogates (``"\\udcff"``: what a file name decoded with
``surrogateescape`` yields), which UTF-8 cannot encode. ``json.dumps`` escapes them as
``\\udcff``, and SQLite's JSON functions turn that escape into bytes that are not UTF-8, so
a row holding one could no longer be read. Every text the queue stores therefore passes
through here: values callers choose (results, metadata, progress messages, checkpoints) are
refused with a message naming them; error texts, which come from exceptions a handler
cannot control, are made safe instead (:func:`safe_text` writes the surrogate as the
escape ``\\udcff``).

JSON the queue stores (requests, results, metadata, checkpoints, progress) may nest at most
:data:`MAX_JSON_DEPTH` containers deep. The limits underneath are higher: pydantic validates
about 255 levels, Python's ``json`` about 990 (then ``RecursionError``), and SQLite's JSON
functions 2,000 (3.40.1, here) or 1,000 (3.45 and later); the queue adds at most three
levels of its own around a value.

Everything here is pure and cheap for the usual value: ASCII text is recognised in
constant time, and the depth of JSON text is computed only when the text holds more
brackets than the limit.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: The deepest nesting of lists and objects the queue stores (``[]`` is 1 deep, ``5`` is 0).
MAX_JSON_DEPTH = 100
#: The levels the runtime's checkpoint adds around a handler's data or an item's result
#: (``{"done": {"0": result}}``): ``save_checkpoint`` allows as many more.
CHECKPOINT_WRAPPING = 2

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def text_problem(value: str, *, where: bool = True) -> str | None:
    """Why ``value`` cannot be stored as UTF-8 text (``where``: saying at which position), or
    None when it can."""
    if value.isascii():
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        at = f" at position {exc.start}" if where else ""
        code = ord(value[exc.start])
        if 0xDC80 <= code <= 0xDCFF:  # a byte Python could not decode (surrogateescape)
            return (
                f"holds the byte \\x{code - 0xDC00:02x}{at}, which is not UTF-8 (text from "
                "a terminal or file in another encoding?): only UTF-8 text can be stored"
            )
        return (
            f"holds a lone surrogate ({value[exc.start]!r}{at}), "
            "which cannot be stored as UTF-8 text"
        )
    return None


def check_text(value: str, what: str, *, where: bool = True, column: bool = False) -> str:
    """``value`` when it can be stored as UTF-8 text; ``ValueError`` naming ``what`` else.
    ``column``: it goes into a text column of its own (not inside JSON), where PostgreSQL
    cannot store a NUL character either (refused on every backend, so that a task is
    accepted or refused the same way wherever it goes)."""
    if column and "\x00" in value:
        at = f" at position {value.index(chr(0))}" if where else ""
        raise ValueError(f"{what} holds a NUL character{at}, which a text column cannot store")
    problem = text_problem(value, where=where)
    if problem is not None:
        raise ValueError(f"{what} {problem}")
    return value


def safe_text(value: str) -> str:
    """``value`` with each lone surrogate written as its escape (``\\udcff``), and each NUL
    as ``\\x00`` (SQLite's JSON functions, through which error texts travel, end a text at
    its first NUL): for texts the caller cannot control, such as an exception's message."""
    if "\x00" in value:
        value = value.replace("\x00", "\\x00")
    if value.isascii():
        return value
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def json_depth(text: str) -> int:
    """How deeply the lists and objects of the JSON ``text`` nest (brackets in strings do not
    count)."""
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub("", text)):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def check_json_text(text: str, what: str, *, wrapped: int = 0) -> str:
    """``text`` (JSON) when it can be stored: UTF-8, at most :data:`MAX_JSON_DEPTH` deep
    (``wrapped``: levels more, which the queue's own wrapping adds around the value)."""
    check_text(text, what, where=False)  # a position in the JSON text would mislead
    limit = MAX_JSON_DEPTH + wrapped
    if text.count("[") + text.count("{") > limit and json_depth(text) > limit:
        raise ValueError(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")
    return text


def json_text(value: Any, what: str, *, wrapped: int = 0) -> str:
    """``value`` as compact JSON text the database can store; ``ValueError`` naming ``what``
    for a value JSON cannot hold (NaN and infinities included: SQLite's JSON refuses them),
    text that is not UTF-8, or nesting deeper than :data:`MAX_JSON_DEPTH` (``wrapped``: as
    for :func:`check_json_text`)."""
    try:
        text = _encode(value)
    except RecursionError:
        raise ValueError(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not JSON: {exc}") from exc
    return check_json_text(text, what, wrapped=wrapped)


def json_problem(value: Any) -> str | None:
    """Why ``value`` cannot be stored as JSON (see :func:`json_text`), or None."""
    kind = type(value)
    if value is None or kind is bool or kind is int:
        return None
    if kind is str:
        return text_problem(value)
    try:
        json_text(value, "it")
    except ValueError as exc:
        return str(exc).removeprefix("it ")
    return None

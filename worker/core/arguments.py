"""Checks of the public API's arguments: each refusal is an :class:`InvalidInputError` that
names the argument, raised before anything is read or written.

Numbers must be numbers (``True`` is not a count), finite and within bounds; texts must be
strings the database can store as UTF-8 (:mod:`worker.core.storable`); a list of names must not
be a bare string (which would be taken letter by letter).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Sequence
from numbers import Real
from typing import Any

from pydantic import ValidationError

from worker.core.errors import InvalidInputError
from worker.core.limits import MAX_ATTEMPTS, MAX_DURATION_S
from worker.core.storable import MAX_JSON_DEPTH, safe_text, text_problem
from worker.core.validation_errors import error_message

#: The most tasks one call may claim or sweep (as ``QUEUE_BATCH_SIZE``).
MAX_BATCH = 100_000
#: The most tasks one page of ``list_tasks`` may hold (SQLite's LIMIT is a 64-bit integer;
#: this keeps it a 32-bit one).
MAX_PAGE = 2**31 - 1
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")


def count(name: str, value: Any, *, low: int = 1, high: int = MAX_BATCH) -> int:
    """A whole number from ``low`` to ``high``."""
    if isinstance(value, bool):
        raise InvalidInputError(f"{name} must be a whole number, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise InvalidInputError(
            f"{name} must be a whole number, got {type(value).__name__} {value!r:.100}"
        ) from None
    if not low <= number <= high:
        raise InvalidInputError(f"{name} must be from {low:,} to {high:,}, got {number:,}")
    return number


def attempts(name: str, value: Any) -> int:
    return count(name, value, high=MAX_ATTEMPTS)


def seconds(name: str, value: Any, *, zero: bool = False, high: float = MAX_DURATION_S) -> float:
    """A finite number of seconds above 0 (at least 0 with ``zero``), at most ``high``."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise InvalidInputError(
            f"{name} must be a number of seconds, got {type(value).__name__} {value!r:.100}"
        )
    number = float(value)
    low_ok = number >= 0 if zero else number > 0
    if not (math.isfinite(number) and low_ok and number <= high):
        bound = ">= 0" if zero else "> 0"
        raise InvalidInputError(
            f"{name} must be a finite number of seconds {bound} and at most {_amount(high)}, "
            f"got {_amount(number)}"
        )
    return number


def _amount(number: float) -> str:
    """``31,536,000`` rather than ``3.1536e+07``; ``0.5``, ``nan`` and ``inf`` as they are."""
    if math.isfinite(number) and number.is_integer():
        return f"{int(number):,}"
    return f"{number:,}" if math.isfinite(number) else str(number)


def string(name: str, value: Any) -> str:
    """A string (any: see :func:`text` for one the database stores as it is)."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{name} must be a string, got {type(value).__name__}")
    return value


def text(name: str, value: Any) -> str:
    """A string the database can store."""
    checked = string(name, value)
    problem = text_problem(checked)
    if problem is not None:
        raise InvalidInputError(f"{name} {problem}")
    return checked


def optional_text(name: str, value: Any) -> str | None:
    return None if value is None else text(name, value)


def queue_name(name: str, value: Any) -> str:
    """A queue's name: 1 to 64 letters, digits and ``_ . : -`` (as ``Task.queue``)."""
    if not isinstance(value, str) or not _QUEUE_NAME.fullmatch(value):
        raise InvalidInputError(
            f"{name} must be a queue name (1 to 64 letters, digits, '_', '.', ':', '-'), "
            f"got {value!r:.100}"
        )
    return value


def queue_names(name: str, value: Any) -> list[str] | None:
    """None, or a list of queue names (not a bare string)."""
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | set | frozenset):
        raise InvalidInputError(
            f"{name} must be a list of queue names, got {type(value).__name__} {value!r:.100}"
        )
    return [queue_name(f"{name}[{index}]", item) for index, item in enumerate(value)]


def leases(name: str, value: Any) -> list[tuple[str, str]]:
    """A list of ``(task_id, lease_id)`` pairs of strings."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise InvalidInputError(f"{name} must be a list of (task_id, lease_id) pairs")
    pairs = []
    for index, pair in enumerate(value):
        if (
            not isinstance(pair, Sequence)
            or isinstance(pair, str)
            or len(pair) != 2
            or not all(isinstance(part, str) for part in pair)
        ):
            raise InvalidInputError(
                f"{name}[{index}] must be a (task_id, lease_id) pair of strings, got {pair!r:.100}"
            )
        pairs.append((text(f"{name}[{index}][0]", pair[0]), text(f"{name}[{index}][1]", pair[1])))
    return pairs


def problems(prefix: str, exc: ValidationError) -> str:
    """pydantic's errors as ``prefix.field: message; ...``, a deep location cut short (and
    without the union branches' names pydantic puts in a ``JsonValue``'s locations)."""
    found = []
    for error in exc.errors():
        loc = [_loc(part) for part in error["loc"] if part not in _UNION_TAGS]
        if len(loc) > _SHOWN_DEPTH:
            loc = [*loc[:_SHOWN_DEPTH], "..."]
        message = error_message(error)
        if error["type"] in ("recursion_loop", "recursion_depth_exceeded"):
            message = f"nested too deeply (at most {MAX_JSON_DEPTH} levels)"
        found.append(f"{prefix}{''.join(loc)}: {message}")
    return safe_text("; ".join(found))  # a key in a location may hold a lone surrogate


#: How many parts of an error's location a message shows; the names of the union branches
#: pydantic adds to a ``JsonValue``'s locations are left out.
_SHOWN_DEPTH = 6
_UNION_TAGS = frozenset({"list", "dict", "str", "int", "float", "bool", "function-after"})


def _loc(part: int | str) -> str:
    return f"[{part}]" if isinstance(part, int) else f".{part}"

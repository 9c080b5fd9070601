"""Pure parsers for command-line values: durations, priorities, database URLs, ``K=V`` pairs.

Each raises ``ValueError`` with a message fit to show the user; the commands turn it into a
usage error (exit code 2), an option's parser through :func:`for_option`.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from worker.core.ids import is_ulid
from worker.core.states import Priority
from worker.core.storable import json_problem

T = TypeVar("T")

_UNITS_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhdw]?)\s*$", re.IGNORECASE)


def parse_duration(text: str | float) -> float:
    """``"30s"``, ``"15m"``, ``"12h"``, ``"7d"``, ``"2w"`` or plain seconds (``"1.5"``) -> seconds.

    A number (an option's default) passes through as seconds.
    """
    if isinstance(text, int | float):
        return float(text)
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(
            f"invalid duration {text!r}: use a number with an optional unit s, m, h, d or w "
            "(e.g. 30s, 15m, 12h, 7d)"
        )
    number, unit = match.groups()
    return float(number) * _UNITS_S[unit.lower() or "s"]


def parse_priority(text: str | int) -> int:
    """An integer, or one of the names low, normal, high, critical (any case)."""
    if isinstance(text, int):
        return text
    cleaned = text.strip()
    try:
        return int(cleaned)
    except ValueError:
        pass
    try:
        return int(Priority[cleaned.upper()])
    except KeyError:
        names = ", ".join(p.name.lower() for p in Priority)
        raise ValueError(f"invalid priority {text!r}: use an integer or one of {names}") from None


def for_option(parse: Callable[[Any], T]) -> Callable[[Any], T]:
    """``parse`` as an option's ``parser``: its ``ValueError`` becomes click's
    ``BadParameter`` with the message alone (typer would show pydantic's "Value error, "
    before it)."""

    @functools.wraps(parse)
    def parser(value: Any) -> T:
        try:
            return parse(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None

    return parser


duration_option = for_option(parse_duration)
priority_option = for_option(parse_priority)


def parse_task_id(text: str) -> str:
    """A task id as typed: a ULID's letters are case-insensitive (Crockford's base 32), and
    the queue spells them in capitals (what is no ULID in capitals either is left as typed,
    for the error that names it)."""
    upper = text.upper()
    return upper if is_ulid(upper) else text


def parse_env_pair(text: str) -> tuple[str, str]:
    """``"NAME=value"`` -> ``("NAME", "value")``; the value may be empty or contain ``=``."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"invalid environment entry {text!r}: use NAME=VALUE")
    return name.strip(), value


def parse_json_list(text: str) -> list[Any]:
    """A JSON array (positional arguments of a call)."""
    value = _json(text)
    if not isinstance(value, list):
        raise ValueError(f"expected a JSON array, got {type(value).__name__}: {text}")
    return value


def parse_json_object(text: str) -> dict[str, Any]:
    """A JSON object (keyword arguments of a call)."""
    value = _json(text)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}: {text}")
    return value


def _json(text: str) -> Any:
    """``text`` parsed, when the database can store what it holds (``\\ud800`` in it parses
    to a lone surrogate, which it cannot)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON {text!r}: {exc.msg} at position {exc.pos}") from None
    except RecursionError:
        raise ValueError(f"JSON nested too deeply: {text:.80}") from None
    except ValueError:  # past the interpreter's limit on the digits of an integer
        limit = sys.get_int_max_str_digits()
        raise ValueError(f"the JSON holds an integer of more than {limit} digits") from None
    problem = json_problem(value)
    if problem is not None:
        raise ValueError(f"the JSON {problem}")
    return value

"""Task ids: ULIDs, monotonic within a millisecond so that id order is enqueue order."""

from __future__ import annotations

import re

from ulid import ULIDGenerator

_generator = ULIDGenerator()

ULID_PATTERN = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")


def new_id() -> str:
    return str(_generator.generate())


def is_ulid(value: str) -> bool:
    return ULID_PATTERN.match(value) is not None

"""Text that was not UTF-8, read anyway: what a tolerant connection gives for it.

The decoder and its mark are apart from :mod:`worker.storage.undecodable` (which retries a
statement with them) because nothing here needs SQLAlchemy: the read commands' path without
it (:mod:`worker.storage.sqlite.quick_reads`) reads every row with :func:`decode`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class Garbled(str):
    """Stored text that was not UTF-8, with U+FFFD in place of each byte that was not."""


def decode(raw: bytes) -> str:
    """The text factory of a tolerant connection: UTF-8, or :class:`Garbled` text."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return Garbled(raw.decode("utf-8", "replace"))


def garbled_columns(row: Sequence[Any], names: Sequence[str]) -> list[str]:
    """The names of the columns of ``row`` whose text was not UTF-8."""
    return [name for name, value in zip(names, row, strict=False) if type(value) is Garbled]

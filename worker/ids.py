"""Task ids: ULIDs, monotonic within a process so that id order is enqueue order.

Generation is python-ulid's layout (48-bit millisecond time, 80 random bits, incremented by
one within a millisecond) with the encoding done by the C base32 codec: a bulk enqueue
needs tens of thousands of ids, and python-ulid's pure-Python encoder costs more per id than
inserting the row. A test checks every id against python-ulid's parser.
"""

from __future__ import annotations

import base64
import os
import re
import threading
import time

ULID_PATTERN = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$")
_RANDOM_BITS = 80
_RANDOM_MAX = (1 << _RANDOM_BITS) - 1
_TO_CROCKFORD = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
)


class UlidGenerator:
    """Monotonic ULIDs: later calls (in any thread of this process) get larger ids."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ms = 0
        self._random = 0

    def new_ids(self, count: int) -> list[str]:
        with self._lock:
            ms = max(time.time_ns() // 1_000_000, self._ms)
            if ms > self._ms:
                random = int.from_bytes(os.urandom(10), "big") >> 1  # room to count up
            else:
                random = self._random + 1
            if random + count > _RANDOM_MAX:  # this millisecond is used up: borrow the next
                ms, random = ms + 1, int.from_bytes(os.urandom(10), "big") >> 1
            self._ms, self._random = ms, random + count - 1
        return _encode((ms << _RANDOM_BITS) | random, count)


def _encode(first: int, count: int) -> list[str]:
    """``count`` consecutive 128-bit values as 26-character Crockford base32 strings.

    Each value is shifted into 20 bytes (160 bits, exactly 32 base32 characters) so that
    its first 26 characters are the value with two zero bits on top; all values go through
    one ``b32encode`` and one ``translate`` to the Crockford alphabet.
    """
    blob = b"".join(((first + offset) << 30).to_bytes(20, "big") for offset in range(count))
    text = base64.b32encode(blob).decode("ascii").translate(_TO_CROCKFORD)
    return [text[start : start + 26] for start in range(0, 32 * count, 32)]


_generator = UlidGenerator()


def new_id() -> str:
    return _generator.new_ids(1)[0]


def new_ids(count: int) -> list[str]:
    return _generator.new_ids(count)


def is_ulid(value: str) -> bool:
    return ULID_PATTERN.match(value) is not None

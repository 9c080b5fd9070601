"""Task ids: ULIDs, monotonic within a process so that id order is enqueue order.

Generation is python-ulid's layout (48-bit millisecond time, 80 random bits, incremented by
one within a millisecond). A bulk enqueue needs tens of thousands of consecutive ids, and
encoding each one whole costs more than inserting its row, so the 22 leading characters are
encoded once per 2**20 values and only the last four change, by table lookup. A test checks
every id against python-ulid's parser.
"""

from __future__ import annotations

import os
import re
import threading
import time

ULID_PATTERN = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$")
_RANDOM_BITS = 80
_RANDOM_MAX = (1 << _RANDOM_BITS) - 1
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: Every 10-bit value as its two Crockford characters.
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]
_LOW_BITS = 20  # the last four characters


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


def _encode_whole(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def _encode(first: int, count: int) -> list[str]:
    """``count`` consecutive 128-bit values as 26-character Crockford base32 strings."""
    ids: list[str] = []
    value, end = first, first + count
    while value < end:
        high = value >> _LOW_BITS
        prefix = _encode_whole(high, 22)
        stop = min(end, (high + 1) << _LOW_BITS)
        pairs = _PAIRS
        while value < stop:  # the last two characters run through a slice of the pairs
            low = value & ((1 << _LOW_BITS) - 1)
            upto = min(stop - value, 1024 - (low & 1023))
            head = prefix + pairs[low >> 10]
            ids += [head + pair for pair in pairs[low & 1023 : (low & 1023) + upto]]
            value += upto
    return ids


_generator = UlidGenerator()


def new_id() -> str:
    return _generator.new_ids(1)[0]


def new_ids(count: int) -> list[str]:
    return _generator.new_ids(count)


def is_ulid(value: str) -> bool:
    return ULID_PATTERN.match(value) is not None


def id_floor(at: float) -> str:
    """The smallest ULID of time ``at`` (seconds): every id made at or after it is larger."""
    return _encode_whole(int(at * 1000) << _RANDOM_BITS, 26)

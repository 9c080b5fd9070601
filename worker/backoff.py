"""Retry delays: a pure function of the attempt number, the settings and a random source."""

from __future__ import annotations

import random
from typing import Protocol

#: Jitter adds at most this fraction of the delay (never subtracts, never passes the cap).
JITTER_FRACTION = 0.1


class RandomSource(Protocol):
    def random(self) -> float: ...


def retry_delay_s(
    attempt: int,
    *,
    base_delay_s: float,
    multiplier: float,
    max_delay_s: float,
    rng: RandomSource | None = None,
    jitter: float = JITTER_FRACTION,
) -> float:
    """Delay before attempt ``attempt + 1``, after attempt ``attempt`` (1-based) failed.

    ``min(max_delay_s, base_delay_s * multiplier ** (attempt - 1))``, plus up to ``jitter`` of
    itself (still capped), so that a burst of failures does not retry in lockstep.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    exponent = attempt - 1
    # Guard the power against overflow: past the cap nothing changes.
    try:
        raw = base_delay_s * multiplier**exponent
    except OverflowError:
        raw = max_delay_s
    delay = min(max_delay_s, raw)
    if jitter > 0:
        draw = (rng or random).random()
        delay = min(max_delay_s, delay * (1.0 + jitter * draw))
    return delay

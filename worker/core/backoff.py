"""Retry delays: a pure function of the attempt number, the settings and a random source."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from worker.core.models import RetryPolicy

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
    # Guard the power against overflow: past the cap nothing changes (and no delay stays none).
    try:
        raw = base_delay_s * multiplier**exponent
    except OverflowError:
        raw = max_delay_s if base_delay_s > 0 else 0.0
    delay = min(max_delay_s, raw)
    if jitter > 0:
        draw = (rng or random).random()
        delay = min(max_delay_s, delay * (1.0 + jitter * draw))
    return delay


def next_attempt_at(
    *,
    attempt: int,
    now: float,
    created_at: float,
    policy: RetryPolicy | None,
    requested_delay_s: float | None,
    base_delay_s: float,
    multiplier: float,
    max_delay_s: float,
    rng: RandomSource | None = None,
) -> float | None:
    """When attempt ``attempt + 1`` may start, or None when the policy's deadline forbids it.

    ``requested_delay_s`` (a handler's ``Retry(delay=...)``) wins over the policy; the task's
    :class:`~worker.core.models.RetryPolicy` wins over the queue's exponential backoff.
    """
    if requested_delay_s is not None:
        delay = requested_delay_s
    elif policy is None:
        delay = retry_delay_s(
            attempt,
            base_delay_s=base_delay_s,
            multiplier=multiplier,
            max_delay_s=max_delay_s,
            rng=rng,
        )
    elif policy.kind == "exponential":
        delay = retry_delay_s(
            attempt,
            base_delay_s=_given(policy.base_delay_s, base_delay_s),
            multiplier=_given(policy.multiplier, multiplier),
            max_delay_s=_given(policy.max_delay_s, max_delay_s),
            rng=rng,
        )
    elif policy.kind == "fixed":
        delay = policy.delay_s or 0.0
    else:
        delay = policy.delays_s[min(attempt, len(policy.delays_s)) - 1]
    at = now + delay
    if policy is not None and policy.deadline_s is not None and at > created_at + policy.deadline_s:
        return None
    return at


def _given(value: float | None, default: float) -> float:
    return default if value is None else value

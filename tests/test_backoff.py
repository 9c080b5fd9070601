"""Backoff is a pure function: base, growth, cap, jitter bound."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.core.backoff import JITTER_FRACTION, retry_delay_s


class Fixed:
    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


def delay(attempt: int, draw: float = 0.0) -> float:
    return retry_delay_s(attempt, base_delay_s=60, multiplier=2, max_delay_s=3600, rng=Fixed(draw))


def test_first_delay_is_the_base() -> None:
    assert delay(1) == 60


def test_grows_by_the_multiplier() -> None:
    assert [delay(n) for n in range(1, 6)] == [60, 120, 240, 480, 960]


def test_capped() -> None:
    assert delay(7) == 3600  # 60 * 2**6 = 3840
    assert delay(10_000) == 3600, "huge attempt numbers do not overflow"


def test_no_base_delay_stays_no_delay_however_many_attempts() -> None:
    zero = [
        retry_delay_s(n, base_delay_s=0.0, multiplier=2.0, max_delay_s=3600, rng=Fixed(0.5))
        for n in (1, 2, 1_100, 10_000)
    ]
    assert zero == [0, 0, 0, 0]


def test_jitter_adds_at_most_its_fraction_and_never_passes_the_cap() -> None:
    assert delay(1, draw=0.999999) == pytest.approx(60 * (1 + JITTER_FRACTION), rel=1e-5)
    assert delay(7, draw=0.999999) == 3600


@given(
    attempt=st.integers(1, 200),
    base=st.floats(0, 1e4),
    multiplier=st.floats(1, 10),
    cap=st.floats(0, 1e6),
    seed=st.integers(0, 2**32),
)
def test_bounds(attempt: int, base: float, multiplier: float, cap: float, seed: int) -> None:
    value = retry_delay_s(
        attempt, base_delay_s=base, multiplier=multiplier, max_delay_s=cap, rng=random.Random(seed)
    )
    try:
        exact = min(cap, base * multiplier ** (attempt - 1))
    except OverflowError:
        exact = cap
    assert exact <= value <= min(cap, exact * (1 + JITTER_FRACTION)) + 1e-9


def test_attempt_must_be_positive() -> None:
    with pytest.raises(ValueError, match="attempt"):
        delay(0)

"""Token-bucket rate limits (failover.rate): bursts, refill, keys apart, rates under 1/s, clock steps."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from failover.rate import RateLimiter


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(rates: dict[str, float], burst: float | None = None) -> tuple[RateLimiter, Ticks]:
    ticks = Ticks()
    return RateLimiter(lambda key: rates[key], burst, ticks), ticks


def test_a_burst_of_one_seconds_worth_then_the_wait_for_the_next_call() -> None:
    limits, _ = limiter({"smtp": 4})
    assert [limits.try_acquire("smtp") for _ in range(4)] == [0.0] * 4
    assert limits.try_acquire("smtp") == pytest.approx(0.25)


def test_the_allowance_refills_with_time_up_to_the_burst() -> None:
    limits, ticks = limiter({"smtp": 4})
    for _ in range(4):
        limits.try_acquire("smtp")
    ticks.now += 0.5  # two calls' worth
    assert [limits.try_acquire("smtp") for _ in range(3)][:2] == [0.0, 0.0]
    ticks.now += 3600  # idle for an hour: still one second's worth, not 14,400 calls
    granted = sum(limits.try_acquire("smtp") == 0.0 for _ in range(10))
    assert granted == 4


def test_keys_have_their_own_allowance() -> None:
    limits, _ = limiter({"smtp": 1, "sns": 1})
    assert limits.try_acquire("smtp") == 0.0
    assert limits.try_acquire("smtp") > 0
    assert limits.try_acquire("sns") == 0.0


def test_a_rate_under_one_per_second_allows_one_call_per_period() -> None:
    limits, ticks = limiter({"webhook": 0.5})
    assert limits.try_acquire("webhook") == 0.0
    assert limits.try_acquire("webhook") == pytest.approx(2.0)
    ticks.now += 2.0
    assert limits.try_acquire("webhook") == 0.0


def test_a_clock_stepping_back_refills_nothing() -> None:
    limits, ticks = limiter({"smtp": 1})
    limits.try_acquire("smtp")
    ticks.now -= 60
    assert limits.try_acquire("smtp") > 0


def test_a_rate_that_is_not_positive_is_refused() -> None:
    limits, _ = limiter({"smtp": 0})
    with pytest.raises(ValueError, match="smtp"):
        limits.try_acquire("smtp")


@given(
    rate=st.floats(0.1, 500),
    steps=st.lists(st.floats(0, 2), min_size=1, max_size=200),
)
def test_never_more_than_the_burst_plus_rate_times_elapsed(rate: float, steps: list[float]) -> None:
    limits, ticks = limiter({"k": rate})
    start, granted = ticks.now, 0
    for step in steps:
        ticks.now += step
        granted += limits.try_acquire("k") == 0.0
    assert granted <= max(1.0, rate) + rate * (ticks.now - start) + 1e-6

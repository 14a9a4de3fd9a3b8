"""Ramped failback: a weight from 10% to 100% over the ramp, and admission by the caller's draw."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from failover.ramp import Ramp, admit_under_ramp, ramp_weight

from factories import NOW

HOUR = 3600.0


def test_ramp_starts_at_ten_percent() -> None:
    assert ramp_weight(NOW, NOW, HOUR) == pytest.approx(0.1)


def test_ramp_grows_linearly_to_the_midpoint() -> None:
    assert ramp_weight(NOW, NOW + timedelta(minutes=30), HOUR) == pytest.approx(0.55)


def test_ramp_reaches_full_weight_at_its_end_and_stays_there() -> None:
    assert ramp_weight(NOW, NOW + timedelta(hours=1), HOUR) == 1.0
    assert ramp_weight(NOW, NOW + timedelta(hours=5), HOUR) == 1.0


def test_ramp_reads_a_clock_behind_its_start_as_the_start() -> None:
    assert ramp_weight(NOW, NOW - timedelta(minutes=5), HOUR) == pytest.approx(0.1)


def test_zero_duration_means_full_weight_at_once() -> None:
    assert ramp_weight(NOW, NOW, 0) == 1.0


def test_ramp_start_weight_is_configurable() -> None:
    assert ramp_weight(NOW, NOW, HOUR, start=0.25) == pytest.approx(0.25)


@pytest.mark.parametrize(("duration_s", "start"), [(-1.0, 0.1), (HOUR, -0.1), (HOUR, 1.5)])
def test_ramp_rejects_a_negative_duration_or_a_start_outside_zero_to_one(
    duration_s: float, start: float
) -> None:
    with pytest.raises(ValueError):
        ramp_weight(NOW, NOW, duration_s, start)


def test_order_is_admitted_when_the_draw_is_below_the_weight() -> None:
    assert admit_under_ramp(0.3, 0.29)
    assert not admit_under_ramp(0.3, 0.3)


def test_full_weight_admits_every_draw() -> None:
    assert admit_under_ramp(1.0, 0.999999)


def test_draw_outside_zero_to_one_is_rejected() -> None:
    with pytest.raises(ValueError):
        admit_under_ramp(0.5, 1.0)


def test_ramp_is_finished_at_its_end() -> None:
    ramp = Ramp("icheon", NOW, HOUR)
    assert not ramp.finished(NOW + timedelta(minutes=59))
    assert ramp.finished(NOW + timedelta(hours=1))


@given(st.floats(0, 10 * HOUR), st.floats(0, 10 * HOUR), st.floats(1, 4 * HOUR), st.floats(0, 1))
def test_weight_never_falls_as_time_passes_and_stays_between_start_and_one(
    t1: float, t2: float, duration_s: float, start: float
) -> None:
    earlier, later = sorted((t1, t2))
    w1 = ramp_weight(NOW, NOW + timedelta(seconds=earlier), duration_s, start)
    w2 = ramp_weight(NOW, NOW + timedelta(seconds=later), duration_s, start)
    assert start <= w1 <= w2 <= 1.0


@given(st.floats(0, 1))
def test_share_of_evenly_spread_draws_admitted_matches_the_weight(weight: float) -> None:
    draws = [i / 1000 for i in range(1000)]
    admitted = sum(admit_under_ramp(weight, d) for d in draws)
    assert admitted / 1000 == pytest.approx(weight, abs=0.001)

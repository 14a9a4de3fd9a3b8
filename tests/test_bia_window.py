"""The observed window: the history's real span by default, an explicit period when one is given.

A week exported in UTC, [Mon 2025-03-03 00:00Z, Mon 2025-03-10 00:00Z), is in Seoul (UTC+9)
[Mon 09:00, next Mon 09:00): 168 hours that straddle eight local days. Per-hour figures must be
averaged over those 168 hours, not over the 192 hours of the eight whole local days.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from test_bia_hand import SEOUL, history, tiny_world

from bia.engine import run_bia
from bia.frame import read_history
from bia.history import generate_history, write_history
from bia.params import BiaParams
from bia.results import BiaResult
from control_plane.domain import InvalidInput

NOW = datetime(2025, 3, 17, tzinfo=UTC)
WEEK_START_UTC = datetime(2025, 3, 3, tzinfo=UTC)  # Monday 09:00 in Seoul
WEEK_END_UTC = datetime(2025, 3, 10, tzinfo=UTC)  # Monday 09:00 in Seoul, a week later


def utc_week() -> pl.DataFrame:
    """Three orders over a week exported in UTC: the first in its first hour, the last in its last."""
    frame = history(
        [
            # Monday 00:00Z = Monday 09:00 KST (hour of week 9)
            ("O1", datetime(2025, 3, 3, 0, 0, tzinfo=UTC), "web", "c1", "north", "a", "S1", 1, 100.0),
            # Wednesday 12:30Z = Wednesday 21:30 KST
            ("O2", datetime(2025, 3, 5, 12, 30, tzinfo=UTC), "app", "c2", "south", "b", "S3", 2, 20.0),
            # Sunday 23:59Z = next Monday 08:59 KST (hour of week 8)
            ("O3", datetime(2025, 3, 9, 23, 59, tzinfo=UTC), "web", "c3", "north", "a", "S2", 1, 50.0),
        ]
    )
    return frame.with_columns(pl.col("placed_at").dt.convert_time_zone("UTC"))


def analyse(frame: pl.DataFrame, **params: object) -> BiaResult:
    return run_bia(frame, tiny_world(), BiaParams(timezone="Asia/Seoul", **params), now=NOW)  # type: ignore[arg-type]


# --- the default window: the history's real span --------------------------------------------------------


def test_utc_week_analysed_in_seoul_is_averaged_over_168_hours() -> None:
    result = analyse(utc_week())
    # [Mon 09:00 KST, next Mon 09:00 KST): seven days, not the eight whole local days (192 h) they touch
    assert result.period_hours == 168
    assert result.period_start == datetime(2025, 3, 3, 9, tzinfo=SEOUL)
    assert result.period_end == datetime(2025, 3, 10, 9, tzinfo=SEOUL)
    # every order: O1, O2, O3 = 3 orders, 100 + 40 + 50 = 190 revenue
    everything = result.integration("pay").demand
    assert everything.orders_per_hour.mean == pytest.approx(3 / 168)
    assert everything.revenue_per_hour.mean == pytest.approx(190 / 168)
    # site A: O1 and O3, 150 revenue
    a = result.site("a").demand
    assert a.orders_per_hour.mean == pytest.approx(2 / 168)
    assert a.revenue_per_hour.mean == pytest.approx(150 / 168)


def test_each_hour_of_the_week_occurs_as_often_as_the_window_holds_it() -> None:
    a = analyse(utc_week()).site("a").demand
    # Monday 09:00 (O1) and Monday 08:00 (O3) each occur once in [Mon 09:00, next Mon 09:00):
    # their means are the hour's order count, not half of it as over eight days with two Mondays
    assert a.orders_per_hour.by_hour_of_week[9] == pytest.approx(1.0)
    assert a.orders_per_hour.by_hour_of_week[8] == pytest.approx(1.0)
    assert a.revenue_per_hour.by_hour_of_week[9] == pytest.approx(100.0)
    assert a.revenue_per_hour.by_hour_of_week[8] == pytest.approx(50.0)


def test_generated_week_exported_in_utc_is_averaged_over_168_hours(tmp_path: Path) -> None:
    world = tiny_world()
    # seven days generated on the UTC clock, busy enough that its first and last hours have orders
    frame = generate_history(world, days=7, seed=21, orders_per_day=2_000, timezone="UTC")
    path = tmp_path / "week.csv"
    write_history(frame, path)
    result = run_bia(read_history(path), world, BiaParams(timezone="Asia/Seoul"), now=NOW)
    assert result.period_hours == 168
    assert result.period_start == datetime(2025, 3, 3, 9, tzinfo=SEOUL)
    everything = result.integration("pay").demand
    orders = frame["order_id"].n_unique()
    revenue = (frame["qty"] * frame["unit_price"]).sum()
    assert everything.orders == orders
    assert everything.orders_per_hour.mean == pytest.approx(orders / 168)
    assert everything.revenue_per_hour.mean == pytest.approx(revenue / 168)


def test_window_runs_from_the_first_orders_hour_to_the_end_of_the_last_orders_hour() -> None:
    frame = history(
        [
            ("O1", datetime(2025, 3, 3, 10, 15, tzinfo=SEOUL), "web", "c1", "north", "a", "S1", 1, 100.0),
            ("O2", datetime(2025, 3, 3, 13, 0, tzinfo=SEOUL), "web", "c2", "north", "a", "S1", 1, 100.0),
        ]
    )
    result = analyse(frame)
    # 10:00 (10:15 floored) to 14:00 (the end of the 13:00 hour, which holds an order placed at 13:00:00)
    assert (result.period_start, result.period_hours) == (datetime(2025, 3, 3, 10, tzinfo=SEOUL), 4)
    assert result.site("a").demand.orders_per_hour.mean == pytest.approx(2 / 4)


def test_naive_local_times_give_the_same_window() -> None:
    frame = history(
        [
            ("O1", datetime(2025, 3, 3, 10, 15, tzinfo=SEOUL), "web", "c1", "north", "a", "S1", 1, 100.0),
            ("O2", datetime(2025, 3, 3, 13, 0, tzinfo=SEOUL), "web", "c2", "north", "a", "S1", 1, 100.0),
        ]
    ).with_columns(pl.col("placed_at").dt.replace_time_zone(None))  # 10:15 and 13:00, no offset
    result = analyse(frame)
    assert (result.period_start, result.period_hours) == (datetime(2025, 3, 3, 10, tzinfo=SEOUL), 4)


def test_a_week_across_a_daylight_saving_change_has_168_hours() -> None:
    # New York moves its clocks forward on Sunday 2025-03-09 02:00: the UTC week
    # [2025-03-03 00:00Z, 2025-03-10 00:00Z) is Sunday 19:00 EST to Sunday 20:00 EDT there,
    # 169 hours on the local clock but 168 real ones, the hour 02:00 of that Sunday never occurring
    frame = history(
        [
            ("O1", datetime(2025, 3, 3, 0, 0, tzinfo=UTC), "web", "c1", "north", "a", "S1", 1, 100.0),
            ("O2", datetime(2025, 3, 9, 23, 30, tzinfo=UTC), "web", "c2", "north", "a", "S1", 1, 100.0),
        ]
    ).with_columns(pl.col("placed_at").dt.convert_time_zone("UTC"))
    result = run_bia(frame, tiny_world(), BiaParams(timezone="America/New_York"), now=NOW)
    assert result.period_hours == 168
    # the real instants (a difference of two New York times would count the local clock's 169 hours)
    assert (result.period_start.astimezone(UTC), result.period_end.astimezone(UTC)) == (
        WEEK_START_UTC,
        WEEK_END_UTC,
    )
    a = result.site("a").demand
    assert a.orders_per_hour.mean == pytest.approx(2 / 168)
    # both orders fall in Sunday 19:00 local (hour of week 6 * 24 + 19), which the window holds twice
    assert a.orders_per_hour.by_hour_of_week[163] == pytest.approx(1.0)


# --- an explicit window -----------------------------------------------------------------------------------


def test_explicit_period_is_used_exactly() -> None:
    # the same week given as UTC bounds: 168 hours from Monday 09:00 in Seoul
    week = analyse(utc_week(), period_start=WEEK_START_UTC, period_end=WEEK_END_UTC)
    assert (week.period_start, week.period_end, week.period_hours) == (
        datetime(2025, 3, 3, 9, tzinfo=SEOUL),
        datetime(2025, 3, 10, 9, tzinfo=SEOUL),
        168,
    )
    assert week.integration("pay").demand.orders_per_hour.mean == pytest.approx(3 / 168)
    # two local weeks around the same orders: 336 hours, each hour of the week occurs twice
    fortnight = analyse(
        utc_week(),
        period_start=datetime(2025, 3, 3, tzinfo=SEOUL),
        period_end=datetime(2025, 3, 17, tzinfo=SEOUL),
    )
    assert fortnight.period_hours == 336
    a = fortnight.site("a").demand
    assert a.orders_per_hour.mean == pytest.approx(2 / 336)
    assert a.revenue_per_hour.mean == pytest.approx(150 / 336)
    assert a.orders_per_hour.by_hour_of_week[9] == pytest.approx(1 / 2)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (WEEK_END_UTC, WEEK_END_UTC),  # from == to
        (WEEK_END_UTC, WEEK_START_UTC),  # from after to
    ],
)
def test_period_with_from_not_before_to_is_refused(start: datetime, end: datetime) -> None:
    with pytest.raises(InvalidInput, match="period_end: must be after period_start"):
        BiaParams(period_start=start, period_end=end)


def test_orders_outside_an_explicit_period_are_refused() -> None:
    # the period stops at Wednesday 00:00 KST: O2 (Wednesday 21:30) and O3 (next Monday 08:59) are after it
    with pytest.raises(InvalidInput, match=r"2 order line\(s\) placed outside the period"):
        analyse(
            utc_week(),
            period_start=datetime(2025, 3, 3, tzinfo=SEOUL),
            period_end=datetime(2025, 3, 5, tzinfo=SEOUL),
        )
    # ... and a period that starts after the first order (Monday 09:00 KST) refuses O1
    with pytest.raises(InvalidInput, match=r"1 order line\(s\) placed outside the period"):
        analyse(utc_week(), period_start=datetime(2025, 3, 3, 10, tzinfo=SEOUL), period_end=WEEK_END_UTC)


def test_period_bounds_off_the_hour_are_refused() -> None:
    with pytest.raises(InvalidInput, match="period_start: must be on a whole local hour"):
        BiaParams(period_start=datetime(2025, 3, 3, 9, 30, tzinfo=SEOUL), period_end=WEEK_END_UTC)


def test_period_bounds_may_be_iso_strings() -> None:
    # what a JSON request carries; the same instants as the datetimes
    params = BiaParams(period_start="2025-03-03T00:00:00+00:00", period_end="2025-03-10T00:00:00Z")  # type: ignore[arg-type]
    assert (params.period_start, params.period_end) == (WEEK_START_UTC, WEEK_END_UTC)
    with pytest.raises(InvalidInput, match="period_start: not an ISO 8601 date-time"):
        BiaParams(period_start="last monday", period_end="2025-03-10T00:00:00Z")  # type: ignore[arg-type]

"""The seeded order-history generator and the history reader (CSV, Parquet, frames)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from bia.frame import HISTORY_COLUMNS, read_history
from bia.history import generate_history, write_history
from control_plane.domain import InvalidInput, World
from control_plane.world.loader import load_world_file

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_WORLD = ROOT / "examples" / "kr-retail" / "world.yaml"


@pytest.fixture(scope="module")
def world() -> World:
    return load_world_file(SAMPLE_WORLD)[0]


@pytest.fixture(scope="module")
def two_weeks(world: World) -> pl.DataFrame:
    return generate_history(world, days=14, seed=11)


def local(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(t=pl.col("placed_at").dt.convert_time_zone("Asia/Seoul"))


def test_same_seed_same_history_other_seed_other_history(world: World) -> None:
    first = generate_history(world, days=2, seed=3)
    assert first.equals(generate_history(world, days=2, seed=3))
    assert not first.equals(generate_history(world, days=2, seed=4))


def test_history_has_the_ten_columns_and_sane_values(two_weeks: pl.DataFrame, world: World) -> None:
    assert tuple(two_weeks.columns) == HISTORY_COLUMNS
    assert two_weeks.null_count().sum_horizontal().item() == 0
    assert two_weeks["qty"].min() >= 1
    prices = {s.sku: float(s.unit_price) for s in world.catalog}
    assert all(
        prices[sku] == price for sku, price in two_weeks.select("sku", "unit_price").unique().iter_rows()
    )
    # every line ships from a site that stocks its SKU (split shipments when the home site does not)
    pairs = two_weeks.select("site", "sku").unique().iter_rows()
    assert all(world.stock.get(pair, 0) > 0 for pair in pairs)
    # one SKU per line and order; a customer keeps one region and one postal code
    assert two_weeks.select("order_id", "sku").is_duplicated().sum() == 0
    per_customer = two_weeks.group_by("customer_id").agg(
        pl.col("region").n_unique(), pl.col("postal_code").n_unique()
    )
    assert per_customer["region"].max() == 1 and per_customer["postal_code"].max() == 1


def test_evenings_are_busier_than_nights(two_weeks: pl.DataFrame) -> None:
    orders = local(two_weeks).unique("order_id").with_columns(hour=pl.col("t").dt.hour())
    by_hour = dict(orders.group_by("hour").len().iter_rows())
    assert by_hour[21] + by_hour[22] > 5 * (by_hour[4] + by_hour[5])


def test_one_peak_sale_day_and_busier_mondays_than_saturdays(two_weeks: pl.DataFrame) -> None:
    orders = local(two_weeks).unique("order_id").with_columns(day=pl.col("t").dt.date())
    per_day = orders.group_by("day").len().sort("len", descending=True)
    counts = per_day["len"].to_list()
    assert counts[0] > 2.2 * counts[len(counts) // 2]  # the sale day: about 3x a median day
    normal = orders.filter(pl.col("day") != per_day["day"][0]).with_columns(weekday=pl.col("t").dt.weekday())
    by_weekday = dict(normal.group_by("weekday").len().iter_rows())
    assert by_weekday[1] > by_weekday[6]  # Monday (1) vs Saturday (6), sale day excluded


def test_sku_popularity_is_pareto(two_weeks: pl.DataFrame) -> None:
    lines = two_weeks.group_by("sku").len().sort("len", descending=True)["len"].to_list()
    assert sum(lines[:12]) / sum(lines) > 0.55  # the top 20% of 60 SKUs carry most lines


def test_regional_demand_follows_world_shares(two_weeks: pl.DataFrame, world: World) -> None:
    orders = two_weeks.unique("order_id")
    shares = {r: n / orders.height for r, n in orders.group_by("region").len().iter_rows()}
    for region in world.regions:
        assert shares[region.code] == pytest.approx(region.demand_share, abs=0.01)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_written_history_reads_back_the_same(world: World, tmp_path: Path, suffix: str) -> None:
    frame = generate_history(world, days=1, seed=5)
    path = tmp_path / f"history{suffix}"
    write_history(frame, path)
    back = read_history(path)
    assert back.height == frame.height
    assert (
        back["placed_at"].dt.convert_time_zone("UTC").equals(frame["placed_at"].dt.convert_time_zone("UTC"))
    )
    assert back.drop("placed_at").equals(frame.drop("placed_at"))


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2025-03-03 10:15:00", datetime(2025, 3, 3, 10, 15)),  # naive: local wall clock
        ("2025-03-03T01:15:00Z", datetime(2025, 3, 3, 1, 15, tzinfo=ZoneInfo("UTC"))),  # = 10:15 in Seoul
        ("2025-03-03T10:15:00+09:00", datetime(2025, 3, 3, 1, 15, tzinfo=ZoneInfo("UTC"))),
    ],
)
def test_timestamps_with_and_without_offset(tmp_path: Path, stamp: str, expected: datetime) -> None:
    path = tmp_path / "h.csv"
    path.write_text(f"{','.join(HISTORY_COLUMNS)}\nO1,{stamp},web,c1,capital,01000,icheon,KR-0001,1,4500\n")
    assert read_history(path)["placed_at"][0] == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("O1,yesterday,web,c1,capital,01000,icheon,KR-0001,1,4500", "placed_at"),
        ("O1,2025-03-03 10:15:00,web,c1,capital,01000,icheon,KR-0001,one,4500", "bad value"),
        ("O1,2025-03-03 10:15:00,web,c1,capital,01000,icheon,KR-0001,0,4500", "qty"),
        ("O1,2025-03-03 10:15:00,web,,capital,01000,icheon,KR-0001,1,4500", "customer_id"),
    ],
)
def test_bad_history_rows_are_invalid_input(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "h.csv"
    path.write_text(",".join(HISTORY_COLUMNS) + "\n" + body + "\n")
    with pytest.raises(InvalidInput, match=message):
        read_history(path)


def test_generator_refuses_no_days(world: World) -> None:
    with pytest.raises(InvalidInput, match="days"):
        generate_history(world, days=0, seed=1)


def test_history_files_are_csv_or_parquet(world: World, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"\.csv or \.parquet"):
        write_history(generate_history(world, days=1, seed=1), tmp_path / "h.xlsx")

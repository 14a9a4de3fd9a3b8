"""The history read once, lazily (bia.scan): same analysis from Parquet, CSV or a frame; same checks."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from bia.engine import run_bia
from bia.frame import HISTORY_COLUMNS, read_history, scan_history
from bia.history import generate_history, write_history
from bia.params import BiaParams
from control_plane.domain import InvalidInput, World
from control_plane.world.loader import load_world_file

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_WORLD = ROOT / "examples" / "kr-retail" / "world.yaml"
NOW = datetime(2025, 4, 1, tzinfo=UTC)
GOOD_ROW = "O{n},2025-03-03T10:15:00+09:00,web,c1,capital,01000,icheon,KR-0001,1,4500"


@pytest.fixture(scope="module")
def world() -> World:
    return load_world_file(SAMPLE_WORLD)[0]


@pytest.fixture(scope="module")
def three_days(world: World) -> pl.DataFrame:
    return generate_history(world, days=3, seed=9)


def analyse(history: pl.DataFrame | pl.LazyFrame, world: World) -> dict[str, Any]:
    return run_bia(history, world, BiaParams(), now=NOW).to_json_dict()


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_scanned_file_gives_the_same_bia_as_the_frame_in_memory(
    world: World, three_days: pl.DataFrame, tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"history{suffix}"
    write_history(three_days, path)
    expected = analyse(three_days, world)
    assert analyse(scan_history(path), world) == expected
    assert analyse(read_history(path), world) == expected
    assert analyse(three_days.lazy(), world) == expected


def test_scan_reads_only_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text(",".join(HISTORY_COLUMNS) + "\n" + GOOD_ROW.format(n=1) + "\n")
    assert isinstance(scan_history(path), pl.LazyFrame)


def test_a_bad_timestamp_past_the_sample_is_refused_like_a_bad_sample(world: World, tmp_path: Path) -> None:
    # the format is chosen on the first 1,000 timestamps; a bad one after them must not pass as empty
    rows = [GOOD_ROW.format(n=n) for n in range(1500)]
    rows.append("O9999,yesterday,web,c1,capital,01000,icheon,KR-0001,1,4500")
    path = tmp_path / "h.csv"
    path.write_text(",".join(HISTORY_COLUMNS) + "\n" + "\n".join(rows) + "\n")
    with pytest.raises(InvalidInput, match="placed_at is not an ISO 8601 timestamp"):
        run_bia(scan_history(path), world, BiaParams(), now=NOW)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("postal_code", None, "postal_code: 1 empty value(s)"),
        ("order_id", None, "order_id: 1 empty value(s)"),
        ("qty", 0, "qty: 1 line(s) with qty <= 0"),
        ("unit_price", -1.0, "unit_price: 1 line(s) with a negative price"),
        ("site", "atlantis", "unknown site(s) not in world"),
    ],
)
def test_a_scanned_parquet_is_checked_like_a_frame(
    world: World, three_days: pl.DataFrame, tmp_path: Path, column: str, value: object, message: str
) -> None:
    bad = three_days.with_columns(
        pl.when(pl.int_range(pl.len()) == 7).then(pl.lit(value)).otherwise(pl.col(column)).alias(column)
    )
    path = tmp_path / "h.parquet"
    write_history(bad, path)
    with pytest.raises(InvalidInput, match=re.escape(message)):
        run_bia(scan_history(path), world, BiaParams(), now=NOW)
    with pytest.raises(InvalidInput, match=re.escape(message)):
        run_bia(bad, world, BiaParams(), now=NOW)


def test_an_empty_history_over_an_explicit_period_has_no_demand(
    world: World, three_days: pl.DataFrame
) -> None:
    start = three_days["placed_at"].min()
    assert isinstance(start, datetime)
    hour = start.replace(minute=0, second=0, microsecond=0)
    params = BiaParams(period_start=hour, period_end=hour + timedelta(days=1))
    result = run_bia(three_days.clear().lazy(), world, params, now=NOW)
    assert result.period_hours == 24
    assert result.totals.lines == 0 and result.totals.orders == 0

"""The BIA's read of the store (issue 16, at scale): on PostgreSQL the lines are COPYed into a file
the BIA scans, on SQLite read in chunks; either way the analysis equals that of the same lines given
as a frame, and only live or shipped orders at a site count."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
from sqlalchemy import update

from bia.engine import run_bia
from bia.history import generate_history
from control_plane.bia_runs.repository import order_history
from control_plane.store.db import make_session_factory
from control_plane.store.tables import OrderRow
from control_plane.world.loader import load_world_file

from harness import SAMPLE_WORLD, engine_for, prepare_database, store_history

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def read(url: str, since: datetime, workdir: Path) -> tuple[pl.DataFrame, int]:
    engine = engine_for(url)
    with make_session_factory(engine)() as s:
        history, lines = order_history(s, since, workdir)
    engine.dispose()
    frame = history.collect() if isinstance(history, pl.LazyFrame) else history
    return frame, lines


def test_the_store_history_gives_the_bia_of_the_same_lines_as_a_frame(db_url: str, tmp_path: Path) -> None:
    world, _ = load_world_file(SAMPLE_WORLD)
    prepare_database(db_url, world)
    lines = generate_history(world, 2, 7, start=date(2026, 11, 20))
    store_history(db_url, lines)
    history, count = read(db_url, datetime(2026, 11, 1, tzinfo=UTC), tmp_path)
    assert count == lines.height == history.height
    # an order is at one site in the store (the generator may split one over sites), and the store
    # hands the lines back in its own order: sorted alike, the sums add up alike
    key = ["order_id", "sku", "qty"]
    expected = lines.with_columns(pl.col("site").first().over("order_id")).sort(key)
    from_store = run_bia(history.sort(key), world, now=NOW).to_json_dict()
    assert from_store == run_bia(expected, world, now=NOW).to_json_dict()


def test_only_orders_at_a_site_since_the_moment_count(db_url: str, tmp_path: Path) -> None:
    world, _ = load_world_file(SAMPLE_WORLD)
    prepare_database(db_url, world)
    lines = generate_history(world, 1, 7, start=date(2026, 11, 20))
    store_history(db_url, lines)
    orders = lines.unique("order_id", maintain_order=True)["order_id"].to_list()
    engine = engine_for(db_url)
    with engine.begin() as c:
        c.execute(update(OrderRow).where(OrderRow.id.in_(orders[:10])).values(status="held", site=None))
        c.execute(update(OrderRow).where(OrderRow.id.in_(orders[10:20])).values(status="cancelled"))
    engine.dispose()
    history, count = read(db_url, datetime(2026, 11, 1, tzinfo=UTC), tmp_path)
    assert count == lines.filter(~pl.col("order_id").is_in(orders[:20])).height
    assert set(history["order_id"].unique().to_list()).isdisjoint(orders[:20])
    _, none = read(db_url, datetime(2026, 11, 20, tzinfo=UTC) + timedelta(days=30), tmp_path)
    assert none == 0

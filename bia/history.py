"""Generate a seeded, realistic order history for a world, and write it as CSV or Parquet.

The shape follows what Korean e-commerce order logs look like: a quiet night and an evening peak,
busier Mondays and Sunday evenings, one peak-sale day at about three times normal volume, Zipf
popularity over the catalog (the first SKU sells most), demand by region as the world's demand
shares, repeat customers, and split shipments when the home site does not stock a SKU.

Everything is vectorised in Polars; randomness comes from seeded Arrow streams (one per
attribute), so the same (world, days, seed, start) always gives the same frame.
"""

from __future__ import annotations

import math
import random
from datetime import date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pyarrow.compute as pc

from bia.geo import haversine_km, home_sites
from control_plane.domain import InvalidInput, World

# Share of the total fulfilment capacity used on an average hour: with the evening peak and the
# sale day on top, the busiest hours reach the limit of some sites, which is what a BIA must see.
DEFAULT_LOAD_FACTOR = 0.17
DEFAULT_START = date(2025, 3, 3)  # a Monday
HOUR_OF_DAY = (
    0.9, 0.6, 0.35, 0.2, 0.15, 0.15, 0.25, 0.45, 0.7, 0.9, 1.1, 1.2,
    1.3, 1.2, 1.1, 1.1, 1.1, 1.15, 1.2, 1.35, 1.55, 1.75, 1.8, 1.4,
)  # fmt: skip
WEEKDAY = (1.12, 1.05, 1.0, 0.97, 0.9, 0.88, 1.08)  # Monday first
PEAK_DAY_FACTOR = 3.0
CHANNELS = (("app", 0.43), ("web", 0.22), ("coupang", 0.25), ("naver", 0.10))
LINES_PER_ORDER = (0.55, 0.25, 0.12, 0.05, 0.03)  # P(1 line), P(2 lines), ...
QTY_PER_LINE = (0.78, 0.15, 0.05, 0.02)  # P(qty 1), P(qty 2), ...
ORDERS_PER_CUSTOMER = 2.5
# Korean postal-code (first two digits) ranges per region of the sample world.
POSTAL_PREFIXES = {
    "capital": (1, 23),
    "gangwon": (24, 26),
    "chungcheong": (27, 35),
    "yeongnam": (36, 53),
    "honam": (54, 62),
    "jeju": (63, 63),
}


def default_orders_per_day(world: World) -> int:
    """A day's orders at the world's usual load: its sites' hourly capacity at DEFAULT_LOAD_FACTOR."""
    return round(sum(s.capacity_per_hour for s in world.sites) * 24 * DEFAULT_LOAD_FACTOR)


def generate_history(
    world: World,
    days: int,
    seed: int,
    start: date = DEFAULT_START,
    orders_per_day: int | None = None,
    timezone: str = "Asia/Seoul",
) -> pl.DataFrame:
    """Return one row per order line over `days` local days from `start`, sorted by time."""
    if days <= 0:
        raise InvalidInput(f"days must be at least 1, got {days}")
    if orders_per_day is None:
        orders_per_day = default_orders_per_day(world)
    if orders_per_day <= 0:
        raise InvalidInput(f"orders_per_day must be at least 1, got {orders_per_day}")
    rng = random.Random(seed)
    counts = _orders_per_hour(days, orders_per_day, start, rng)
    orders = _orders(world, counts, seed, start, ZoneInfo(timezone))
    return _lines(world, orders, seed)


def _orders_per_hour(days: int, orders_per_day: int, start: date, rng: random.Random) -> list[int]:
    """Draw Poisson order counts for every local hour of the period (a loop over hours, not rows)."""
    peak_day = rng.randrange(days) if days < 3 else rng.randrange(1, days - 1)
    hod_total = sum(HOUR_OF_DAY)
    week_mean = sum(WEEKDAY) / 7
    counts: list[int] = []
    for day in range(days):
        weekday = (start.weekday() + day) % 7
        for hour in range(24):
            lam = orders_per_day * WEEKDAY[weekday] / week_mean * HOUR_OF_DAY[hour] / hod_total
            if day == peak_day:
                lam *= PEAK_DAY_FACTOR * (2.0 if hour == 0 else 1.0)  # the sale opens at midnight
            counts.append(_poisson(rng, lam))
    return counts


def _poisson(rng: random.Random, lam: float) -> int:
    if lam < 30:  # inversion; exact for small means
        k, p, u = 0, math.exp(-lam), rng.random()
        cumulative = p
        while u > cumulative:
            k += 1
            p *= lam / k
            cumulative += p
        return k
    return max(0, round(rng.gauss(lam, math.sqrt(lam))))  # normal approximation for large means


def _uniform(n: int, seed: int, stream: int) -> pl.Series:
    """A seeded stream of n uniforms in [0, 1); each attribute draws from its own stream."""
    return pl.Series(pc.random(n, initializer=(seed * 1_000 + stream) % 2**63))


def _pick(cumulative: list[float], u: pl.Series) -> pl.Series:
    """Inverse-CDF sampling: the index of the bucket each uniform falls into."""
    edges = pl.Series(cumulative[:-1], dtype=pl.Float64)
    return edges.search_sorted(u, side="right").cast(pl.Int64)


def _cumulative(weights: list[float]) -> list[float]:
    total = sum(weights)
    out, acc = [], 0.0
    for w in weights:
        acc += w / total
        out.append(acc)
    out[-1] = 1.0
    return out


def _orders(world: World, counts: list[int], seed: int, start: date, zone: ZoneInfo) -> pl.DataFrame:
    hours = pl.DataFrame({"hour": range(len(counts)), "n": counts})
    frame = hours.select(pl.col("hour").repeat_by("n")).explode("hour").drop_nulls()
    n = frame.height
    regions = world.regions
    region_idx = _pick(_cumulative([max(r.demand_share, 1e-9) for r in regions]), _uniform(n, seed, 1))
    channel_idx = _pick(_cumulative([w for _, w in CHANNELS]), _uniform(n, seed, 2))
    # Customers: a pool per region, drawn with u^2 so a few customers order often (repeat buyers).
    shares = [max(r.demand_share, 1e-9) for r in regions]
    sizes = [max(20, round(n * s / sum(shares) / ORDERS_PER_CUSTOMER)) for s in shares]
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    u_cust = _uniform(n, seed, 3)
    start_local = datetime.combine(start, time(0), tzinfo=zone)
    frame = frame.with_columns(
        region_idx=region_idx,
        channel=pl.Series([c for c, _ in CHANNELS]).gather(channel_idx),
        ms=(_uniform(n, seed, 4) * 3_600_000).cast(pl.Int64),
        u_site=_uniform(n, seed, 5),
        n_lines=_pick(_cumulative(list(LINES_PER_ORDER)), _uniform(n, seed, 6)) + 1,
        customer=pl.Series(offsets).gather(region_idx)
        + (pl.Series(sizes).gather(region_idx) * u_cust * u_cust).cast(pl.Int64),
    )
    frame = frame.with_columns(
        placed_at=pl.lit(start_local)
        + pl.duration(hours=pl.col("hour"))
        + pl.duration(milliseconds=pl.col("ms"))
    ).sort("placed_at")
    # The home site: a region's own sites split its demand by capacity (see geo.home_sites).
    homes = home_sites(world)
    site_codes = [s.code for s in world.sites]
    edges, targets = [], []
    for i, region in enumerate(regions):
        for site, upper in zip(
            [c for c, _ in homes[region.code]],
            _cumulative([w for _, w in homes[region.code]]),
            strict=True,
        ):
            edges.append(i + upper)
            targets.append(site_codes.index(site))
    home_idx = pl.Series(edges[:-1], dtype=pl.Float64).search_sorted(
        frame["region_idx"].cast(pl.Float64) + frame["u_site"], side="right"
    )
    prefixes = [POSTAL_PREFIXES.get(r.code, (10 + 5 * i, 14 + 5 * i)) for i, r in enumerate(regions)]
    region = pl.col("region_idx")
    return frame.with_row_index("seq").select(
        order_id=pl.lit("O") + (pl.col("seq") + 1).cast(pl.String).str.zfill(9),
        placed_at=pl.col("placed_at"),
        channel=pl.col("channel"),
        customer_id=pl.lit("C") + pl.col("customer").cast(pl.String).str.zfill(7),
        region=_lookup(region, [r.code for r in regions]),
        # A customer's postal code is fixed: derived from the customer number inside the region's range.
        postal_code=(
            (
                _lookup(region, [lo for lo, _ in prefixes])
                + pl.col("customer") % _lookup(region, [hi - lo + 1 for lo, hi in prefixes])
            )
            * 1000
            + (pl.col("customer") * 7919) % 1000
        )
        .cast(pl.String)
        .str.zfill(5),
        home_idx=pl.Series(targets, dtype=pl.Int64).gather(home_idx),
        n_lines=pl.col("n_lines"),
    )


def _lookup(index: pl.Expr, values: list[object]) -> pl.Expr:
    """Map a small integer index column onto a list of values."""
    return index.replace_strict(dict(enumerate(values)))


def _lines(world: World, orders: pl.DataFrame, seed: int) -> pl.DataFrame:
    lines = orders.with_columns(line=pl.int_ranges(0, pl.col("n_lines"))).explode("line")
    n = lines.height
    catalog = world.catalog
    # Zipf popularity over the catalog's order: SKU i sells about 1/i as often as the first.
    sku_idx = _pick(_cumulative([1.0 / (i + 1) for i in range(len(catalog))]), _uniform(n, seed, 7))
    qty = _pick(_cumulative(list(QTY_PER_LINE)), _uniform(n, seed, 8)) + 1
    route = _fulfilling_site(world)
    lines = lines.with_columns(sku_idx=sku_idx, qty=qty).unique(
        subset=["order_id", "sku_idx"], keep="first", maintain_order=True
    )  # one line per SKU and order: a repeated draw is dropped
    return lines.select(
        pl.col("order_id"),
        pl.col("placed_at"),
        pl.col("channel"),
        pl.col("customer_id"),
        pl.col("region"),
        pl.col("postal_code"),
        site=_lookup(
            pl.col("home_idx") * len(catalog) + pl.col("sku_idx"), [world.sites[j].code for j in route]
        ),
        sku=_lookup(pl.col("sku_idx"), [s.sku for s in catalog]),
        qty=pl.col("qty"),
        unit_price=_lookup(pl.col("sku_idx"), [float(s.unit_price) for s in catalog]),
    )


def _fulfilling_site(world: World) -> list[int]:
    """For (home site, SKU): the home site if it stocks the SKU, else the nearest site that does."""
    sites = world.sites
    out: list[int] = []
    for home in sites:
        by_distance = sorted(range(len(sites)), key=lambda j: haversine_km(home.location, sites[j].location))
        for sku in world.catalog:
            stocked = [j for j in by_distance if world.stock.get((sites[j].code, sku.sku), 0) > 0]
            out.append(stocked[0] if stocked else sites.index(home))
    return out


def write_history(frame: pl.DataFrame, path: Path) -> None:
    """Write the history as CSV or Parquet, chosen by the file's suffix."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise InvalidInput(f"{path}: history files end in .csv or .parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        frame.write_csv(path)
    else:
        frame.write_parquet(path)

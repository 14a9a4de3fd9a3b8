"""Read an order history (CSV, Parquet or a frame from the store), check it and put it on the hour grid.

The analysis works on local hours: `slot` counts hours from the start of the observed period and
`how` is the hour of the week (0 = Monday 00:00 local, 167 = Sunday 23:00). Timestamps with an
offset are converted to the retailer's time zone; naive timestamps are taken as local already.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv

from bia.params import BiaParams
from control_plane.domain import FieldError, InvalidInput, World

HISTORY_COLUMNS = (
    "order_id",
    "placed_at",
    "channel",
    "customer_id",
    "region",
    "postal_code",
    "site",
    "sku",
    "qty",
    "unit_price",
)
_TEXT = ("order_id", "channel", "customer_id", "region", "postal_code", "site", "sku")
HOURS_PER_WEEK = 168
# Tried in order on a sample; the first that parses the sample parses the whole column.
_TIMESTAMP_FORMATS = (
    ("%Y-%m-%dT%H:%M:%S%.f%z", None),
    ("%Y-%m-%d %H:%M:%S%.f%z", None),
    ("%Y-%m-%dT%H:%M:%S%.fZ", "UTC"),
    ("%Y-%m-%dT%H:%M:%S%.f", None),
    ("%Y-%m-%d %H:%M:%S%.f", None),
    ("%Y-%m-%dT%H:%M", None),
    ("%Y-%m-%d %H:%M", None),
)


@dataclass(frozen=True, slots=True)
class Period:
    """The observed local hours: [start, start + hours)."""

    start: datetime  # local, aware
    hours: int
    start_hour: int  # local wall-clock hours since 1970-01-01 00:00
    occurrences: tuple[int, ...]  # how many times each hour of the week occurs in the period

    @property
    def end(self) -> datetime:
        return self.start + timedelta(hours=self.hours)


def read_history(path: Path) -> pl.DataFrame:
    """Read a CSV or Parquet history with the ten history columns; raise InvalidInput on anything else."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise InvalidInput(f"{path}: order history files end in .csv or .parquet")
    if not path.is_file():
        raise InvalidInput(f"{path}: no such file")
    try:
        if suffix == ".parquet":
            columns = list(pl.read_parquet_schema(path))
            _require_columns(columns, str(path))
            frame = pl.read_parquet(path, columns=list(HISTORY_COLUMNS))
        else:
            columns = pl.read_csv(path, n_rows=0).columns
            _require_columns(columns, str(path))
            frame = _read_csv(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InvalidInput(f"{path}: cannot read the order history ({_first_line(exc)})") from None
    return normalize_history(frame, str(path))


def _read_csv(path: Path) -> pl.DataFrame:
    """Read a CSV history, text columns as text (postal codes keep their leading zeros).

    Arrow's reader parses ISO timestamps with an offset about twice as fast as Polars; it refuses
    naive timestamps and bad values, which then take the Polars path, where normalize_history
    reads naive times as local and names the bad column.
    """
    types = {c: pa.string() for c in _TEXT}
    types |= {"placed_at": pa.timestamp("us", tz="UTC"), "qty": pa.int64(), "unit_price": pa.float64()}
    try:
        options = pacsv.ConvertOptions(include_columns=list(HISTORY_COLUMNS), column_types=types)
        frame = pl.from_arrow(pacsv.read_csv(path, convert_options=options))
        if isinstance(frame, pl.DataFrame):
            return frame
    except pa.ArrowException:
        pass
    overrides = {c: pl.String for c in (*_TEXT, "placed_at")}
    return pl.read_csv(path, columns=list(HISTORY_COLUMNS), schema_overrides=overrides)


def normalize_history(frame: pl.DataFrame | pl.LazyFrame, source: str = "history") -> pl.DataFrame:
    """Check and cast the ten history columns: text ids, a datetime, integer qty, float price."""
    data = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
    _require_columns(data.columns, source)
    data = data.select(HISTORY_COLUMNS)
    try:
        data = data.with_columns(
            *(pl.col(c).cast(pl.String) for c in _TEXT),
            placed_at=_to_datetime(data["placed_at"], source),
            qty=pl.col("qty").cast(pl.Int64),
            unit_price=pl.col("unit_price").cast(pl.Float64),
        )
    except pl.exceptions.PolarsError as exc:
        raise InvalidInput(f"{source}: bad value in the order history ({_first_line(exc)})") from None
    nulls = data.null_count().row(0, named=True)
    errors = [FieldError(f"{source}.{c}", f"{n} empty value(s)") for c, n in nulls.items() if n]
    bad_qty = data.filter(pl.col("qty") <= 0).height
    if bad_qty:
        errors.append(FieldError(f"{source}.qty", f"{bad_qty} line(s) with qty <= 0"))
    bad_price = data.filter(pl.col("unit_price") < 0).height
    if bad_price:
        errors.append(FieldError(f"{source}.unit_price", f"{bad_price} line(s) with a negative price"))
    if errors:
        raise InvalidInput(f"{source}: {errors[0].path.split('.')[-1]}: {errors[0].message}", errors)
    return data


def _require_columns(columns: list[str], source: str) -> None:
    missing = [c for c in HISTORY_COLUMNS if c not in columns]
    if missing:
        raise InvalidInput(
            f"{source}: missing column(s) {', '.join(missing)}; found {', '.join(columns[:12]) or 'none'}",
            [FieldError(f"{source}.{c}", "missing column") for c in missing],
        )


def _to_datetime(values: pl.Series, source: str) -> pl.Series:
    if values.dtype == pl.Datetime or values.dtype == pl.Date:
        return values.cast(pl.Datetime("us", values.dtype.time_zone if values.dtype == pl.Datetime else None))
    if values.dtype != pl.String:
        raise InvalidInput(f"{source}: placed_at must be a timestamp, got {values.dtype}")
    sample = values.drop_nulls().head(1000)
    for fmt, zone in _TIMESTAMP_FORMATS:
        if sample.str.to_datetime(fmt, strict=False).null_count() == 0:
            try:
                parsed = values.str.to_datetime(fmt, strict=True, time_unit="us")
            except pl.exceptions.PolarsError:
                break
            return parsed.dt.replace_time_zone(zone) if zone else parsed
    raise InvalidInput(f"{source}: placed_at is not an ISO 8601 timestamp (e.g. 2025-03-03T09:30:00+09:00)")


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def local_hours(placed_at: pl.Series, params: BiaParams) -> pl.Series:
    """Wall-clock hours since the epoch in the retailer's zone (naive timestamps are local already)."""
    if getattr(placed_at.dtype, "time_zone", None) is None:
        return placed_at.dt.epoch("s") // 3600
    utc_s = placed_at.dt.epoch("s")
    utc_h = utc_s // 3600
    # The zone's offset is looked up once per distinct UTC hour (hundreds), not per row (millions).
    zone = params.zone
    offsets: dict[int, int] = {}
    for h in utc_h.unique().to_list():
        offset = zone.utcoffset(datetime.fromtimestamp(int(h) * 3600, UTC))
        offsets[int(h)] = int(offset.total_seconds()) if offset is not None else 0
    return (utc_s + utc_h.replace_strict(offsets, return_dtype=pl.Int64)) // 3600


def _local_hour_of(moment: datetime, params: BiaParams) -> int:
    if moment.tzinfo is not None:
        moment = moment.astimezone(params.zone).replace(tzinfo=None)
    return int((moment - datetime(1970, 1, 1)).total_seconds() // 3600)


def hour_of_week(local_hour: int) -> int:
    """0 = Monday 00:00; 1970-01-01 was a Thursday (day 3 of a Monday-first week)."""
    return ((local_hour // 24 + 3) % 7) * 24 + local_hour % 24


def hour_of_week_expr(slot: pl.Expr, period: Period) -> pl.Expr:
    """The hour of the week of a slot column (see hour_of_week)."""
    local_hour = slot.cast(pl.Int64) + period.start_hour
    return ((local_hour // 24 + 3) % 7 * 24 + local_hour % 24).cast(pl.Int32)


def make_period(first_hour: int, last_hour: int, params: BiaParams) -> Period:
    """The observed period: the explicit one from params, else whole local days around the data."""
    if params.period_start is not None and params.period_end is not None:
        start_hour = _local_hour_of(params.period_start, params)
        end_hour = _local_hour_of(params.period_end, params)
    else:
        start_hour = first_hour // 24 * 24
        end_hour = (last_hour // 24 + 1) * 24
    hours = max(1, end_hour - start_hour)
    occurrences = [0] * HOURS_PER_WEEK
    for h in range(start_hour, start_hour + hours):  # a loop over the period's hours, not over orders
        occurrences[hour_of_week(h)] += 1
    start = (datetime(1970, 1, 1) + timedelta(hours=start_hour)).replace(tzinfo=params.zone)
    return Period(start, hours, start_hour, tuple(occurrences))


def prepare_lines(history: pl.DataFrame, world: World, params: BiaParams) -> tuple[pl.DataFrame, Period]:
    """Check the history against the world; hash the ids, add revenue and the slot (hours since start)."""
    sites = {s.code for s in world.sites}
    regions = {r.code for r in world.regions}
    errors: list[FieldError] = []
    for column, known, what in (("site", sites, "site"), ("region", regions, "region")):
        unknown = sorted(set(history[column].unique().to_list()) - known)
        if unknown:
            shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            errors.append(
                FieldError(f"history.{column}", f"unknown {what}(s) not in world {world.name!r}: {shown}")
            )
    if errors:
        raise InvalidInput(f"order history: {errors[0].message}", errors)
    local = local_hours(history["placed_at"], params)
    if history.height == 0 and params.period_start is None:
        raise InvalidInput("order history is empty: nothing to analyse (or give an explicit period)")
    first, last = local.min(), local.max()
    period = make_period(
        int(first) if isinstance(first, int) else 0, int(last) if isinstance(last, int) else 0, params
    )
    slot = (local - period.start_hour).alias("slot")
    lines = (
        history.select("channel", "region", "site", "sku", "qty")
        .with_columns(
            # Distinct counts run a third faster on 64-bit hashes than on the strings; a collision
            # among a million ids has a chance of about 1e-8.
            order_key=history["order_id"].hash(),
            customer_key=history["customer_id"].hash(),
            revenue=history["qty"] * history["unit_price"],
            slot=slot.cast(pl.Int32),
        )
        .filter((pl.col("slot") >= 0) & (pl.col("slot") < period.hours))
    )
    return lines, period

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
_HOUR = timedelta(hours=1)
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
    """The observed local hours: [start, end), `hours` of them (see make_period)."""

    start: datetime  # local, aware
    end: datetime  # local, aware
    hours: int
    start_hour: int  # local wall-clock hours since 1970-01-01 00:00
    occurrences: tuple[int, ...]  # how many times each hour of the week occurs in the period


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


def make_period(
    first: datetime | None, last: datetime | None, params: BiaParams, *, wall_clock: bool = False
) -> Period:
    """The observed period, in whole local hours: [start, end).

    With params.period_start and period_end, that period exactly (BiaParams has checked both lie on
    whole local hours and that start < end). Otherwise the history's real span: from the local hour
    of the first order (`first` floored to the hour) to the end of the hour of the last order (`last`
    floored to the hour, plus one hour). A history exported as [t0, t0 + N days) with orders in its
    first and last hours is thus observed over exactly 24 x N hours, whatever the analysis time zone
    and however many local days it straddles; an hour at either edge without a single order is left
    out (the window is then shorter by that hour, never longer by days).

    Hours are real elapsed hours, each counted at the hour of the week the local clock shows, so a
    week across a daylight-saving change has 168 of them too. With `wall_clock` (a history of naive
    local times, which carry no offsets) the local clock's hours are counted instead.
    """
    zone = params.zone
    if params.period_start is not None and params.period_end is not None:
        start, end = _in_zone(params.period_start, params), _in_zone(params.period_end, params)
    elif first is not None and last is not None:
        start = _in_zone(first, params).replace(minute=0, second=0, microsecond=0)
        last_hour = _in_zone(last, params).replace(minute=0, second=0, microsecond=0)
        if wall_clock:
            end = (last_hour.replace(tzinfo=None) + _HOUR).replace(tzinfo=zone)
        else:
            end = (last_hour.astimezone(UTC) + _HOUR).astimezone(zone)
    else:
        raise InvalidInput("order history is empty: nothing to analyse (or give an explicit period)")
    start_hour = _local_hour_of(start, params)
    if wall_clock:
        local = list(range(start_hour, _local_hour_of(end, params)))
    else:
        utc_start = start.astimezone(UTC)
        count = int((end.astimezone(UTC) - utc_start) // _HOUR)
        # a loop over the period's hours (thousands), not over orders
        local = [_local_hour_of(utc_start + k * _HOUR, params) for k in range(count)]
    if not local:  # only across a daylight-saving change: the local clock went back
        raise InvalidInput(
            f"BIA parameter period_end: the period holds no whole local hour in {params.timezone}",
            [FieldError("period_end", "must be after period_start in local time")],
        )
    occurrences = [0] * HOURS_PER_WEEK
    for h in local:
        occurrences[hour_of_week(h)] += 1
    return Period(start, end, len(local), start_hour, tuple(occurrences))


def _in_zone(moment: datetime, params: BiaParams) -> datetime:
    """An aware moment in the retailer's zone; a naive one is local time already."""
    return moment.astimezone(params.zone) if moment.tzinfo is not None else moment.replace(tzinfo=params.zone)


def _outside(placed_at: pl.Series, period: Period) -> int:
    """Lines placed before the period's start or at or after its end (naive times are local)."""
    if getattr(placed_at.dtype, "time_zone", None) is None:
        low, high = period.start.replace(tzinfo=None), period.end.replace(tzinfo=None)
    else:
        placed_at = placed_at.dt.convert_time_zone("UTC")
        low, high = period.start.astimezone(UTC), period.end.astimezone(UTC)
    return int(((placed_at < low) | (placed_at >= high)).sum())


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
    placed_at = history["placed_at"]
    first, last = placed_at.min(), placed_at.max()
    period = make_period(
        first if isinstance(first, datetime) else None,
        last if isinstance(last, datetime) else None,
        params,
        wall_clock=getattr(placed_at.dtype, "time_zone", None) is None,
    )
    outside = _outside(placed_at, period)
    if outside:  # only with an explicit period: the default one spans every order
        message = (
            f"{outside} order line(s) placed outside the period {period.start.isoformat()} to "
            f"{period.end.isoformat()} ({params.timezone}); orders run from {first} to {last}"
        )
        raise InvalidInput(f"order history: {message}", [FieldError("history.placed_at", message)])
    slot = (local_hours(placed_at, params) - period.start_hour).alias("slot")
    lines = history.select("channel", "region", "site", "sku", "qty").with_columns(
        # Distinct counts run a third faster on 64-bit hashes than on the strings; a collision
        # among a million ids has a chance of about 1e-8.
        order_key=history["order_id"].hash(),
        customer_key=history["customer_id"].hash(),
        revenue=history["qty"] * history["unit_price"],
        slot=slot.cast(pl.Int32),
    )
    return lines, period

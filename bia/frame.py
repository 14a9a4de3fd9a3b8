"""Check an order history against the world and put it on the hour grid.

The analysis works on local hours: `slot` counts hours from the start of the observed period and
`how` is the hour of the week (0 = Monday 00:00 local, 167 = Sunday 23:00). Timestamps with an
offset are converted to the retailer's time zone; naive timestamps are taken as local already.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import polars as pl

from bia.params import BiaParams
from bia.scan import HISTORY_COLUMNS, compact_history, normalize_history, read_history, scan_history
from control_plane.domain import FieldError, InvalidInput, World

# Reading lives in bia.scan; these names stay importable from here, where callers found them.
__all__ = ["HISTORY_COLUMNS", "normalize_history", "read_history", "scan_history"]

HOURS_PER_WEEK = 168
_HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Period:
    """The observed local hours: [start, end), `hours` of them (see make_period)."""

    start: datetime  # local, aware
    end: datetime  # local, aware
    hours: int
    start_hour: int  # local wall-clock hours since 1970-01-01 00:00
    occurrences: tuple[int, ...]  # how many times each hour of the week occurs in the period


def local_hours(
    placed_at: pl.Expr, dtype: pl.DataType, first: datetime | None, last: datetime | None, params: BiaParams
) -> pl.Expr:
    """Wall-clock hours since the epoch in the retailer's zone (naive timestamps are local already).

    The zone's offset is looked up once per UTC hour from `first` to `last` (thousands), never per
    line (millions), and applied as a base offset plus one step per change (daylight saving): a
    plain column expression, with no per-line lookup table to build or join.
    """
    seconds = placed_at.dt.epoch("s")
    if getattr(dtype, "time_zone", None) is None or first is None or last is None:
        return seconds // 3600  # local already, or no lines at all (over an explicit period)
    utc_h = seconds // 3600
    low, high = _utc_hour(first), _utc_hour(last)
    offsets = [_offset_at(h, params) for h in range(low, high + 1)]
    offset = pl.lit(offsets[0], pl.Int64)
    for k in range(1, len(offsets)):
        if offsets[k] != offsets[k - 1]:
            step = offsets[k] - offsets[k - 1]
            offset = offset + pl.when(utc_h >= low + k).then(pl.lit(step, pl.Int64)).otherwise(
                pl.lit(0, pl.Int64)
            )
    return (seconds + offset) // 3600


def _utc_hour(moment: datetime) -> int:
    return int(moment.timestamp() // 3600)


def _offset_at(utc_hour: int, params: BiaParams) -> int:
    offset = params.zone.utcoffset(datetime.fromtimestamp(utc_hour * 3600, UTC))
    return int(offset.total_seconds()) if offset is not None else 0


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


def _outside(data: pl.DataFrame, period: Period) -> int:
    """Lines placed before the period's start or at or after its end (naive times are local)."""
    placed_at = data["placed_at"]
    if getattr(placed_at.dtype, "time_zone", None) is None:
        low, high = period.start.replace(tzinfo=None), period.end.replace(tzinfo=None)
    else:
        placed_at = placed_at.dt.convert_time_zone("UTC")
        low, high = period.start.astimezone(UTC), period.end.astimezone(UTC)
    return int(((placed_at < low) | (placed_at >= high)).sum())


def prepare_lines(
    history: pl.DataFrame | pl.LazyFrame, world: World, params: BiaParams, source: str = "history"
) -> tuple[pl.DataFrame, Period]:
    """Read the history, check it against the world; add revenue and the slot (hours since start).

    The history is read once (see bia.scan.compact_history): a LazyFrame over a file is never
    held as text.
    """
    data = compact_history(history, source)
    _check_known(data, world)
    placed_at = data["placed_at"]
    low, high = placed_at.min(), placed_at.max()
    first = low if isinstance(low, datetime) else None  # None: no lines
    last = high if isinstance(high, datetime) else None
    period = make_period(first, last, params, wall_clock=getattr(placed_at.dtype, "time_zone", None) is None)
    outside = _outside(data, period)
    if outside:  # only with an explicit period: the default one spans every order
        message = (
            f"{outside} order line(s) placed outside the period {period.start.isoformat()} to "
            f"{period.end.isoformat()} ({params.timezone}); orders run from {first} to {last}"
        )
        raise InvalidInput(f"order history: {message}", [FieldError("history.placed_at", message)])
    hours = local_hours(pl.col("placed_at"), placed_at.dtype, first, last, params)
    # In memory, not streamed: the untouched columns stay the compact frame's buffers, not copies.
    lines = data.select(
        "channel",
        "region",
        "site",
        "sku",
        "qty",
        "order_key",
        "customer_key",
        revenue=pl.col("qty") * pl.col("unit_price"),
        slot=(hours - period.start_hour).cast(pl.Int32),
    )
    return lines, period


def _check_known(data: pl.DataFrame, world: World) -> None:
    """Refuse sites and regions the world does not list."""
    sites = {s.code for s in world.sites}
    regions = {r.code for r in world.regions}
    errors: list[FieldError] = []
    for column, known, what in (("site", sites, "site"), ("region", regions, "region")):
        unknown = sorted(set(data[column].unique().to_list()) - known)
        if unknown:
            shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            errors.append(
                FieldError(f"history.{column}", f"unknown {what}(s) not in world {world.name!r}: {shown}")
            )
    if errors:
        raise InvalidInput(f"order history: {errors[0].message}", errors)

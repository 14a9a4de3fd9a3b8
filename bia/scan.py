"""Read an order history (CSV, Parquet or a frame from the store) once, into a compact frame.

A year of a mid-size retailer is about ten million order lines; held as text they take gigabytes.
So the history is scanned lazily with Polars' streaming engine and only what the analysis needs
comes out, about 56 bytes a line: the ids as 64-bit hashes, the names as categoricals, qty, price
and the timestamp. The checks (empty values, qty <= 0, negative prices, unparsable timestamps) run
on that compact frame afterwards, so the file is read once and never held as text.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from control_plane.domain import FieldError, InvalidInput

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
_SAMPLE = 1000
# Compact column -> the history column whose empty values it keeps.
_NULLS_OF = {
    "order_key": "order_id",
    "placed_at": "placed_at",
    "channel": "channel",
    "customer_key": "customer_id",
    "region": "region",
    "postal_missing": "postal_code",
    "site": "site",
    "sku": "sku",
    "qty": "qty",
    "unit_price": "unit_price",
}


def scan_history(path: Path) -> pl.LazyFrame:
    """Open a CSV or Parquet history lazily (only its schema is read); raise InvalidInput on anything else."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise InvalidInput(f"{path}: order history files end in .csv or .parquet")
    if not path.is_file():
        raise InvalidInput(f"{path}: no such file")
    try:
        if suffix == ".parquet":
            _require_columns(list(pl.read_parquet_schema(path)), str(path))
            frame = pl.scan_parquet(path)
        else:
            _require_columns(pl.read_csv(path, n_rows=0).columns, str(path))
            # text stays text (postal codes keep their leading zeros); timestamps are parsed later,
            # in the format a sample shows (see _typed_history)
            text = {c: pl.String for c in (*_TEXT, "placed_at")}
            frame = pl.scan_csv(path, schema_overrides=text)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InvalidInput(f"{path}: cannot read the order history ({_first_line(exc)})") from None
    return frame.select(HISTORY_COLUMNS)


def read_history(path: Path) -> pl.DataFrame:
    """Read a whole history into memory, checked and typed (run_bia needs only scan_history)."""
    return normalize_history(scan_history(path), str(path))


def normalize_history(frame: pl.DataFrame | pl.LazyFrame, source: str = "history") -> pl.DataFrame:
    """Check and cast the ten history columns: text ids, a datetime, integer qty, float price."""
    typed, unparsed = _typed_history(frame, source)
    data = _collect(typed.with_columns(unparsed=unparsed), source)
    nulls = {c: data[c].null_count() for c in HISTORY_COLUMNS}
    _check_values(data, nulls, source)
    return data.select(HISTORY_COLUMNS)


def compact_history(frame: pl.DataFrame | pl.LazyFrame, source: str = "history") -> pl.DataFrame:
    """Read the history once into the compact, checked frame the analysis runs on.

    Columns: order_key and customer_key (u64 hashes), channel, region, site and sku (categorical),
    placed_at, qty and unit_price as typed by _typed_history.
    """
    typed, unparsed = _typed_history(frame, source)
    compact = typed.select(
        # Distinct counts run a third faster on 64-bit hashes than on the strings; a collision
        # among ten million ids has a chance of about 3e-6. An empty id stays empty, to be counted.
        order_key=_hash(pl.col("order_id")),
        customer_key=_hash(pl.col("customer_id")),
        channel=pl.col("channel").cast(pl.Categorical),
        region=pl.col("region").cast(pl.Categorical),
        site=pl.col("site").cast(pl.Categorical),
        sku=pl.col("sku").cast(pl.Categorical),
        postal_missing=pl.col("postal_code").is_null(),  # one bit a line: only its emptiness matters
        placed_at=pl.col("placed_at"),
        qty=pl.col("qty"),
        unit_price=pl.col("unit_price"),
        unparsed=unparsed,
    )
    data = _collect(compact, source)
    nulls = {
        name: int(data[c].sum()) if c == "postal_missing" else data[c].null_count()
        for c, name in _NULLS_OF.items()
    }
    _check_values(data, nulls, source)
    return data.drop("postal_missing", "unparsed")


def _typed_history(frame: pl.DataFrame | pl.LazyFrame, source: str) -> tuple[pl.LazyFrame, pl.Expr]:
    """Cast the ten columns lazily; also return an expression true where a text timestamp did not parse.

    Types: text ids, a microsecond datetime, integer qty, float price. A timestamp that does not
    parse becomes empty in the cast and is told apart from a really empty one by that expression,
    so a bad row anywhere in the file gets the same message as a bad sample.
    """
    lazy = frame.lazy()
    try:
        schema = lazy.collect_schema()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InvalidInput(f"{source}: cannot read the order history ({_first_line(exc)})") from None
    _require_columns(schema.names(), source)
    text = schema["placed_at"] == pl.String
    typed = lazy.select(
        *(pl.col(c).cast(pl.String) for c in _TEXT),
        placed_at=_datetime_expr(lazy, schema["placed_at"], source),
        qty=pl.col("qty").cast(pl.Int64),
        unit_price=pl.col("unit_price").cast(pl.Float64),
        # kept only while the checks run: compact_history drops it with the other text
        **({"placed_at_text": pl.col("placed_at")} if text else {}),
    )
    unparsed = pl.col("placed_at").is_null() & pl.col("placed_at_text").is_not_null()
    return typed, unparsed if text else pl.lit(False)


def _hash(column: pl.Expr) -> pl.Expr:
    """A 64-bit hash of each value; empty stays empty (a hash of nothing would hide it from the checks)."""
    return pl.when(column.is_not_null()).then(column.hash())


def _collect(frame: pl.LazyFrame, source: str) -> pl.DataFrame:
    """Collect with the streaming engine: the source is read in batches, never held whole."""
    try:
        return frame.collect(engine="streaming")
    except pl.exceptions.PolarsError as exc:
        raise InvalidInput(f"{source}: bad value in the order history ({_first_line(exc)})") from None
    except OSError as exc:
        raise InvalidInput(f"{source}: cannot read the order history ({_first_line(exc)})") from None


def _check_values(data: pl.DataFrame, nulls: dict[str, int], source: str) -> None:
    """Raise InvalidInput naming unparsable timestamps, empty values, qty <= 0 or negative prices."""
    if int(data["unparsed"].sum()):
        raise InvalidInput(_not_iso(source))
    errors = [FieldError(f"{source}.{c}", f"{nulls[c]} empty value(s)") for c in HISTORY_COLUMNS if nulls[c]]
    bad_qty = int((data["qty"] <= 0).sum())
    if bad_qty:
        errors.append(FieldError(f"{source}.qty", f"{bad_qty} line(s) with qty <= 0"))
    bad_price = int((data["unit_price"] < 0).sum())
    if bad_price:
        errors.append(FieldError(f"{source}.unit_price", f"{bad_price} line(s) with a negative price"))
    if errors:
        raise InvalidInput(f"{source}: {errors[0].path.split('.')[-1]}: {errors[0].message}", errors)


def _require_columns(columns: list[str], source: str) -> None:
    missing = [c for c in HISTORY_COLUMNS if c not in columns]
    if missing:
        raise InvalidInput(
            f"{source}: missing column(s) {', '.join(missing)}; found {', '.join(columns[:12]) or 'none'}",
            [FieldError(f"{source}.{c}", "missing column") for c in missing],
        )


def _datetime_expr(frame: pl.LazyFrame, dtype: pl.DataType, source: str) -> pl.Expr:
    """placed_at as a microsecond datetime; text in the first format that parses a sample."""
    column = pl.col("placed_at")
    if isinstance(dtype, pl.Datetime):
        return column.cast(pl.Datetime("us", dtype.time_zone))
    if dtype == pl.Date:
        return column.cast(pl.Datetime("us"))
    if dtype != pl.String:
        raise InvalidInput(f"{source}: placed_at must be a timestamp, got {dtype}")
    sample = _collect(frame.select(column.drop_nulls().head(_SAMPLE)), source)["placed_at"]
    for fmt, zone in _TIMESTAMP_FORMATS:
        if sample.str.to_datetime(fmt, strict=False).null_count() == 0:
            parsed = column.str.to_datetime(fmt, strict=False, time_unit="us")
            return parsed.dt.replace_time_zone(zone) if zone else parsed
    raise InvalidInput(_not_iso(source))


def _not_iso(source: str) -> str:
    return f"{source}: placed_at is not an ISO 8601 timestamp (e.g. 2025-03-03T09:30:00+09:00)"


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__

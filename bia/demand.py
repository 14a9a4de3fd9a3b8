"""The core aggregation: orders, revenue and customers per subject and hour, then per hour of the week.

A subject is a site or the set of orders an integration touches. Counting happens per hour slot
first (distinct orders and customers within that hour), then the slots are averaged by hour of the
week, so a Monday-10:00 figure is "what a Monday 10:00 hour brings, on average over the period".
"""

from __future__ import annotations

import polars as pl

from bia.frame import HOURS_PER_WEEK, Period, hour_of_week_expr
from bia.results import Demand, Rate


def slot_aggregation(lines: pl.DataFrame | pl.LazyFrame, key: str | None) -> pl.LazyFrame:
    """Distinct orders, revenue and distinct customers per (key, hour slot)."""
    keys = [key, "slot"] if key else ["slot"]
    return (
        lines.lazy()
        .group_by(keys)
        .agg(
            orders=pl.col("order_key").n_unique(),
            revenue=pl.col("revenue").sum(),
            customers=pl.col("customer_key").n_unique(),
        )
    )


def hour_of_week_table(slots: pl.LazyFrame, key: str | None, period: Period) -> pl.LazyFrame:
    """Mean orders, revenue and customers per hour for each (key, hour of week), plus per-key peaks."""
    keys = [key, "how"] if key else ["how"]
    occurrences = pl.DataFrame(
        {"how": range(HOURS_PER_WEEK), "occurrences": period.occurrences},
        schema={"how": pl.Int32, "occurrences": pl.Int64},
    ).lazy()
    return (
        slots.with_columns(how=hour_of_week_expr(pl.col("slot"), period))
        .group_by(keys)
        .agg(
            orders=pl.col("orders").sum(),
            revenue=pl.col("revenue").sum(),
            customers=pl.col("customers").sum(),
            peak_orders=pl.col("orders").max(),
            peak_revenue=pl.col("revenue").max(),
            peak_customers=pl.col("customers").max(),
        )
        .join(occurrences, on="how", how="left")
        .with_columns(
            orders_per_hour=pl.col("orders") / pl.col("occurrences"),
            revenue_per_hour=pl.col("revenue") / pl.col("occurrences"),
            customers_per_hour=pl.col("customers") / pl.col("occurrences"),
        )
    )


def core_aggregation(lines: pl.DataFrame | pl.LazyFrame, period: Period) -> pl.DataFrame:
    """Orders, revenue and customers per site and hour of the week: what the bench compares with DuckDB."""
    return hour_of_week_table(slot_aggregation(lines, "site"), "site", period).collect(engine="streaming")


def demands_by_key(
    table: pl.DataFrame, key: str | None, keys: list[str], period: Period
) -> dict[str, Demand]:
    """Fold an hour-of-week table into one Demand per key; keys without rows get zero demand."""
    arrays = {k: {m: [0.0] * HOURS_PER_WEEK for m in ("orders", "revenue", "customers")} for k in keys}
    totals = {k: {"orders": 0.0, "revenue": 0.0, "customers": 0.0} for k in keys}
    peaks = {k: {"orders": 0.0, "revenue": 0.0, "customers": 0.0} for k in keys}
    # At most (subjects x 168) rows: a loop over the aggregate, never over order lines.
    for row in table.iter_rows(named=True):
        k = row[key] if key else keys[0]
        if k not in arrays:
            continue
        for metric in ("orders", "revenue", "customers"):
            arrays[k][metric][row["how"]] = float(row[f"{metric}_per_hour"])
            totals[k][metric] += float(row[metric])
            peaks[k][metric] = max(peaks[k][metric], float(row[f"peak_{metric}"]))
    hours = period.hours
    return {
        k: Demand(
            orders=round(totals[k]["orders"]),
            revenue=totals[k]["revenue"],
            orders_per_hour=Rate(totals[k]["orders"] / hours, peaks[k]["orders"], tuple(arrays[k]["orders"])),
            revenue_per_hour=Rate(
                totals[k]["revenue"] / hours, peaks[k]["revenue"], tuple(arrays[k]["revenue"])
            ),
            customers_per_hour=Rate(
                totals[k]["customers"] / hours, peaks[k]["customers"], tuple(arrays[k]["customers"])
            ),
        )
        for k in keys
    }


def zero_demand() -> Demand:
    zeros = tuple([0.0] * HOURS_PER_WEEK)
    return Demand(0, 0.0, Rate(0.0, 0.0, zeros), Rate(0.0, 0.0, zeros), Rate(0.0, 0.0, zeros))

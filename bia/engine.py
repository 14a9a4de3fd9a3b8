"""Run a whole BIA: history + world + parameters in, a BiaResult out. Pure: no files, no clock unless given.

Heavy lifting is columnar (Polars): every aggregation over order lines is one lazy query, and the
independent ones are collected together by the streaming engine, which runs them in parallel over
the compact frame of bia.scan in batches (the in-memory engine needs about twice the memory).
What remains in Python works on aggregates (sites x hours of the week, SKUs x sites).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl

from bia.demand import demands_by_key, hour_of_week_table, slot_aggregation, zero_demand
from bia.failover_map import FailoverPlan, RegionDemand, plan_failover
from bia.frame import HOURS_PER_WEEK, Period, hour_of_week_expr, prepare_lines
from bia.inventory import (
    SiteSkuTotals,
    SkuDemand,
    backup_coverage,
    preposition_plan,
    rank_skus,
    single_points_of_failure,
    site_sku_demand,
)
from bia.loss import LossInputs, loss_curve, recommend_rpo, recommend_rto, tier_for
from bia.params import BiaParams
from bia.results import BiaResult, Demand, IntegrationImpact, SiteImpact, Totals
from bia.scopes import EVERYTHING, Coverage, Scope, fallback_coverage, integration_scope
from control_plane.domain import World

Progress = Callable[[str, float], None]


def run_bia(
    history: pl.DataFrame | pl.LazyFrame,
    world: World,
    params: BiaParams | None = None,
    progress: Progress | None = None,
    now: datetime | None = None,
    source: str = "history",
) -> BiaResult:
    """Analyse an order history against a world; `progress(stage, fraction_done)` is called per stage.

    `source` names the history in error messages (a file's path)."""
    params = params or BiaParams()

    def report(stage: str, done: float) -> None:
        if progress is not None:
            progress(stage, done)

    report("checking the order history", 0.0)
    lines, period = prepare_lines(history, world, params, source)
    report("aggregating demand by site, integration and hour", 0.2)
    site_codes = [s.code for s in world.sites]
    scopes = {i.code: integration_scope(i, world) for i in world.integrations}
    coverages = {i.code: fallback_coverage(i, world) for i in world.integrations}
    agg = _aggregate(lines, period, site_codes, [*scopes.values(), *(c for c in coverages.values() if c)])
    site_demand, scope_demand, site_sku_table = agg.site_demand, agg.scope_demand, agg.site_sku

    report("ranking SKUs and checking backup stock", 0.45)
    ranks, pareto = rank_skus(_sku_demand(site_sku_table), world, params)
    site_sku = {(r["site"], r["sku"]): r for r in site_sku_table.iter_rows(named=True)}
    totals_by_site_sku = SiteSkuTotals.of(
        {k: float(r["units"]) for k, r in site_sku.items()},
        {k: float(r["revenue"]) for k, r in site_sku.items()},
        {k: float(r["orders"]) for k, r in site_sku.items()},
        world,
        params,
    )
    ratio, shortfalls = backup_coverage(totals_by_site_sku, world, period.hours, params)
    regions = _region_demand(lines, agg.region_slots, ratio, period)

    report("mapping failover routes and capacity", 0.65)
    sites = {s.code: s for s in world.sites}
    region_by_code = {r.code: r for r in world.regions}
    own_load = {code: site_demand[code].orders_per_hour.by_hour_of_week for code in site_codes}
    plans = {
        s.code: plan_failover(s, regions.get(s.code, []), own_load, sites, region_by_code, period, params)
        for s in world.sites
    }

    report("estimating losses, RTO, RPO and tiers", 0.8)
    site_impacts = tuple(
        _site_impact(
            s.code, world, site_demand[s.code], regions.get(s.code, []), plans[s.code], period, params
        )
        for s in world.sites
    )
    integration_impacts = tuple(
        _integration_impact(i.code, world, scope_demand, scopes, coverages, period, params)
        for i in world.integrations
    )
    totals = agg.totals
    result = BiaResult(
        generated_at=now or datetime.now(UTC),
        world=world.name,
        params=params,
        period_start=period.start,
        period_end=period.end,
        period_hours=period.hours,
        totals=Totals(
            orders=scope_demand[EVERYTHING.key].orders,
            lines=int(totals["lines"]),
            revenue=float(totals["revenue"] or 0.0),
            customers=int(totals["customers"]),
        ),
        sites=site_impacts,
        integrations=integration_impacts,
        skus=ranks,
        pareto=pareto,
        preposition=preposition_plan(
            shortfalls, {code: plan.absorbed_by_backup for code, plan in plans.items()}, world
        ),
        spofs=single_points_of_failure(ranks, world, period.hours),
        failover_routes=tuple(r for plan in plans.values() for r in plan.routes),
        failover_capacity=tuple(c for plan in plans.values() for c in plan.capacity),
        site_skus=site_sku_demand(totals_by_site_sku, period.hours),
    )
    report("done", 1.0)
    return result


@dataclass(frozen=True, slots=True)
class _Aggregates:
    site_demand: dict[str, Demand]
    scope_demand: dict[str, Demand]  # by Scope.key / Coverage.key
    site_sku: pl.DataFrame  # site, sku, orders, units, revenue
    region_slots: pl.DataFrame  # site, region, slot, orders
    totals: dict[str, Any]  # customers, revenue, lines


def _aggregate(
    lines: pl.DataFrame, period: Period, site_codes: list[str], scopes: list[Scope | Coverage]
) -> _Aggregates:
    """Every pass over the order lines, collected together so Polars runs them in parallel."""
    # One aggregation per distinct set of lines: integrations sharing a scope share the work.
    filters = {EVERYTHING.key: EVERYTHING.expr()} | {s.key: s.expr() for s in scopes}
    lazy = lines.lazy()
    per_scope = [
        hour_of_week_table(slot_aggregation(lazy.filter(f), None), None, period) for f in filters.values()
    ]
    site_table, site_sku, totals, region_slots, *scope_tables = pl.collect_all(
        [
            hour_of_week_table(slot_aggregation(lazy, "site"), "site", period),
            lazy.group_by("site", "sku").agg(
                orders=pl.col("order_key").n_unique(),
                units=pl.col("qty").sum(),
                revenue=pl.col("revenue").sum(),
            ),
            lazy.select(
                customers=pl.col("customer_key").n_unique(), revenue=pl.col("revenue").sum(), lines=pl.len()
            ),
            lazy.group_by("site", "region", "slot").agg(orders=pl.col("order_key").n_unique()),
            *per_scope,
        ],
        engine="streaming",
    )
    return _Aggregates(
        site_demand=demands_by_key(site_table, "site", site_codes, period),
        scope_demand={
            key: demands_by_key(table, None, [key], period)[key]
            for key, table in zip(filters, scope_tables, strict=True)
        },
        site_sku=site_sku,
        region_slots=region_slots,
        totals=totals.row(0, named=True),
    )


def _sku_demand(site_sku: pl.DataFrame) -> list[SkuDemand]:
    """SKU totals from the per-site table (an order counts once per site that ships the SKU)."""
    table = site_sku.group_by("sku").agg(
        pl.col("orders").sum(), pl.col("units").sum(), pl.col("revenue").sum()
    )
    return [SkuDemand(r["sku"], r["orders"], r["units"], r["revenue"]) for r in table.iter_rows(named=True)]


def _region_demand(
    lines: pl.DataFrame, region_slots: pl.DataFrame, ratio: dict[tuple[str, str], float], period: Period
) -> dict[str, list[RegionDemand]]:
    """Orders per site, region and hour of week, and the part the backups hold stock for.

    An order ships from a backup only if every one of its lines can, so an order's stock share is
    the smallest coverage ratio among its SKUs. Only lines of short SKUs are grouped per order.
    """
    short = pl.DataFrame(
        [(site, sku, r) for (site, sku), r in ratio.items() if r < 1.0],
        # the lines hold site and sku as categoricals: join on the same type, not on text
        schema={"site": pl.Categorical, "sku": pl.Categorical, "ratio": pl.Float64},
        orient="row",
    )
    deficit = (
        lines.lazy()
        .join(short.lazy(), on=["site", "sku"], how="inner")
        .group_by("site", "order_key")
        .agg(pl.col("ratio").min(), pl.col("region").first(), pl.col("slot").first())
        .with_columns(how=hour_of_week_expr(pl.col("slot"), period))
        .group_by("site", "region", "how")
        .agg(missing=(1.0 - pl.col("ratio")).sum())
    )
    table = (
        region_slots.lazy()
        .with_columns(how=hour_of_week_expr(pl.col("slot"), period))
        .group_by("site", "region", "how")
        .agg(pl.col("orders").sum())
        .join(deficit, on=["site", "region", "how"], how="left")
        .collect(engine="streaming")
    )
    acc: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    for row in table.iter_rows(named=True):
        orders, eligible = acc.setdefault(
            (row["site"], row["region"]), ([0.0] * HOURS_PER_WEEK, [0.0] * HOURS_PER_WEEK)
        )
        n = period.occurrences[row["how"]]
        orders[row["how"]] = row["orders"] / n
        eligible[row["how"]] = (row["orders"] - (row["missing"] or 0.0)) / n
    out: dict[str, list[RegionDemand]] = {}
    for (site, region), (orders, eligible) in sorted(acc.items()):
        out.setdefault(site, []).append(RegionDemand(region, tuple(orders), tuple(eligible)))
    return out


def _share(numerator: tuple[float, ...], denominator: tuple[float, ...], period: Period) -> float:
    """Period-weighted share; a subject with no orders has nothing to absorb, so its share is 1."""
    top = sum(x * n for x, n in zip(numerator, period.occurrences, strict=True))
    bottom = sum(x * n for x, n in zip(denominator, period.occurrences, strict=True))
    return min(1.0, top / bottom) if bottom > 0 else 1.0


def _site_impact(
    code: str,
    world: World,
    demand: Demand,
    regions: list[RegionDemand],
    plan: FailoverPlan,
    period: Period,
    params: BiaParams,
) -> SiteImpact:
    site = next(s for s in world.sites if s.code == code)
    orders = demand.orders_per_hour.by_hour_of_week
    eligible = tuple(sum(r.eligible[h] for r in regions) for h in range(HOURS_PER_WEEK))
    absorbed_share = tuple(
        min(1.0, a / o) if o > 0 else 0.0 for a, o in zip(plan.absorbed, orders, strict=True)
    )
    losses = loss_curve(
        LossInputs(
            orders=orders,
            revenue=demand.revenue_per_hour.by_hour_of_week,
            customers=demand.customers_per_hour.by_hour_of_week,
            absorbed_share=absorbed_share,
            reroute_cost=plan.reroute_cost,
            late_share=plan.late_share,
            weights=period.occurrences,
        ),
        params,
    )
    rto = recommend_rto(losses, params)
    runs_out = next((c.backup for c in plan.capacity if c.runs_out_first), None)
    return SiteImpact(
        code=code,
        name=site.name,
        region=site.region,
        capacity_per_hour=site.capacity_per_hour,
        backups=site.backups,
        demand=demand,
        absorbable_share=_share(plan.absorbed, orders, period) if site.backups else 0.0,
        stock_share=_share(eligible, orders, period),
        reroute_extra_transit_hours=plan.extra_transit_hours,
        reroute_extra_cost_per_order=plan.extra_cost_per_order,
        capacity_runs_out_at=runs_out,
        losses=losses,
        rto_hours=rto,
        rpo_seconds=recommend_rpo(demand.orders_per_hour.peak, params),
        tier=tier_for(rto, params),
    )


def _integration_impact(
    code: str,
    world: World,
    scope_demand: dict[str, Demand],
    scopes: dict[str, Scope],
    coverages: dict[str, Coverage | None],
    period: Period,
    params: BiaParams,
) -> IntegrationImpact:
    integration = next(i for i in world.integrations if i.code == code)
    scope = scopes[code]
    coverage = coverages[code]
    demand = scope_demand.get(scope.key, zero_demand())
    covered = scope_demand[coverage.key] if coverage is not None else zero_demand()
    orders = demand.orders_per_hour.by_hour_of_week
    covered_orders = covered.orders_per_hour.by_hour_of_week
    zeros = tuple([0.0] * HOURS_PER_WEEK)
    losses = loss_curve(
        LossInputs(
            orders=orders,
            revenue=demand.revenue_per_hour.by_hour_of_week,
            customers=demand.customers_per_hour.by_hour_of_week,
            absorbed_share=tuple(
                min(1.0, c / o) if o > 0 else 0.0 for c, o in zip(covered_orders, orders, strict=True)
            ),
            reroute_cost=zeros,  # a fallback provider ships from the same site: no extra transit
            late_share=zeros,
            weights=period.occurrences,
        ),
        params,
    )
    rto = recommend_rto(losses, params)
    return IntegrationImpact(
        code=code,
        name=integration.name,
        kind=str(integration.kind),
        fallback=integration.fallback,
        sites=tuple(sorted(scope.sites)),
        channels=tuple(sorted(scope.channels)),
        all_orders=scope.everything,
        demand=demand,
        absorbable_share=_share(covered_orders, orders, period) if coverage is not None else 0.0,
        losses=losses,
        rto_hours=rto,
        tier=tier_for(rto, params),
    )

"""Critical inventory: ABC ranking, what backups lack, pre-positioning, single points of failure.

All inputs are small aggregates (SKUs x sites), so plain Python over them is clearer than frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bia.params import BiaParams
from bia.results import Pareto, PrepositionLine, SiteSku, SkuRank, Spof
from control_plane.domain import World, split_by_weight


@dataclass(frozen=True, slots=True)
class SkuDemand:
    sku: str
    orders: int
    units: int
    revenue: float


@dataclass(frozen=True, slots=True)
class Shortfall:
    """One site's critical SKU that its backups cannot cover for the coverage horizon."""

    site: str
    sku: str
    site_abc_class: str
    demand_per_hour: float
    units_needed: int
    backup_spare_units: int

    @property
    def shortfall(self) -> int:
        return max(0, self.units_needed - self.backup_spare_units)


def abc_classes(values: dict[str, float], params: BiaParams) -> dict[str, str]:
    """Class each key by its cumulative share *before* it: A below abc_a_share, B below abc_b_share."""
    total = sum(values.values())
    out: dict[str, str] = {}
    before = 0.0
    for key in sorted(values, key=lambda k: (-values[k], k)):
        if total <= 0 or values[key] <= 0:
            out[key] = "C"
            continue
        share_before = before / total
        out[key] = (
            "A" if share_before < params.abc_a_share else "B" if share_before < params.abc_b_share else "C"
        )
        before += values[key]
    return out


def rank_skus(demand: list[SkuDemand], world: World, params: BiaParams) -> tuple[tuple[SkuRank, ...], Pareto]:
    """Rank every SKU (catalog and sold) by revenue and by orders; class A/B/C by both."""
    names = {s.sku: s.name for s in world.catalog}
    by_sku = {d.sku: d for d in demand}
    for sku in names:
        by_sku.setdefault(sku, SkuDemand(sku, 0, 0, 0.0))
    revenue = {k: d.revenue for k, d in by_sku.items()}
    orders = {k: float(d.orders) for k, d in by_sku.items()}
    by_revenue = abc_classes(revenue, params)
    by_orders = abc_classes(orders, params)
    revenue_order = sorted(by_sku, key=lambda k: (-revenue[k], k))
    orders_rank = {k: i + 1 for i, k in enumerate(sorted(by_sku, key=lambda k: (-orders[k], k)))}
    total_revenue = sum(revenue.values()) or 1.0
    total_orders = sum(orders.values()) or 1.0
    cumulative_orders = _cumulative(orders, sorted(by_sku, key=lambda k: (-orders[k], k)), total_orders)
    stocked = _stocked_at(world)
    ranks: list[SkuRank] = []
    running = 0.0
    for i, sku in enumerate(revenue_order):
        d = by_sku[sku]
        running += d.revenue
        ranks.append(
            SkuRank(
                sku=sku,
                name=names.get(sku, sku),
                rank_by_revenue=i + 1,
                rank_by_orders=orders_rank[sku],
                orders=d.orders,
                units=d.units,
                revenue=d.revenue,
                revenue_share=d.revenue / total_revenue,
                cumulative_revenue_share=running / total_revenue,
                orders_share=d.orders / total_orders,
                cumulative_orders_share=cumulative_orders[sku],
                abc_class=by_revenue[sku],
                abc_class_by_orders=by_orders[sku],
                critical=by_revenue[sku] == "A" or by_orders[sku] == "A",
                stocked_at=tuple(stocked.get(sku, ())),
            )
        )
    count = {c: sum(1 for r in ranks if r.abc_class == c) for c in "ABC"}
    a_revenue = sum(r.revenue for r in ranks if r.abc_class == "A")
    pareto = Pareto(
        skus=len(ranks),
        class_a=count["A"],
        class_b=count["B"],
        class_c=count["C"],
        class_a_share_of_skus=count["A"] / len(ranks) if ranks else 0.0,
        class_a_share_of_revenue=a_revenue / total_revenue,
    )
    return tuple(ranks), pareto


def _cumulative(values: dict[str, float], order: list[str], total: float) -> dict[str, float]:
    out, running = {}, 0.0
    for key in order:
        running += values[key]
        out[key] = running / total
    return out


def _stocked_at(world: World) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for site in world.sites:
        for (code, sku), qty in world.stock.items():
            if code == site.code and qty > 0:
                out.setdefault(sku, []).append(site.code)
    return out


@dataclass(frozen=True, slots=True)
class SiteSkuTotals:
    """Units, revenue and distinct orders per (site, SKU) over the period, and each SKU's class at
    each site (the better of its class by revenue and by orders there), computed once."""

    units: dict[tuple[str, str], float]
    revenue: dict[tuple[str, str], float]
    orders: dict[tuple[str, str], float]
    classes: dict[str, dict[str, str]]  # site -> sku -> A/B/C

    @classmethod
    def of(
        cls,
        units: dict[tuple[str, str], float],
        revenue: dict[tuple[str, str], float],
        orders: dict[tuple[str, str], float],
        world: World,
        params: BiaParams,
    ) -> SiteSkuTotals:
        classes: dict[str, dict[str, str]] = {}
        for site in world.sites:
            by_revenue = abc_classes({sku: r for (c, sku), r in revenue.items() if c == site.code}, params)
            by_orders = abc_classes({sku: n for (c, sku), n in orders.items() if c == site.code}, params)
            classes[site.code] = {
                sku: min(by_revenue.get(sku, "C"), by_orders.get(sku, "C")) for sku in by_revenue | by_orders
            }
        return cls(units, revenue, orders, classes)

    def abc_class(self, site: str, sku: str) -> str:
        return self.classes.get(site, {}).get(sku, "C")


def backup_coverage(
    totals: SiteSkuTotals, world: World, hours: int, params: BiaParams
) -> tuple[dict[tuple[str, str], float], list[Shortfall]]:
    """For each site and SKU it ships: the share of coverage_hours of demand its backups can cover.

    A backup's spare units are its stock minus its own demand over the horizon. Returns that ratio
    per (site, SKU) and the shortfalls of each site's critical SKUs (class A by revenue or orders).
    """
    horizon = params.coverage_hours
    own_need = {key: math.ceil(units / hours * horizon - 1e-9) for key, units in totals.units.items()}
    ratio: dict[tuple[str, str], float] = {}
    shortfalls: list[Shortfall] = []
    for site in world.sites:
        mine = {sku: u for (code, sku), u in totals.units.items() if code == site.code}
        for sku, units in sorted(mine.items()):
            needed = own_need[(site.code, sku)]
            spare = sum(
                max(0, world.stock.get((b, sku), 0) - own_need.get((b, sku), 0)) for b in site.backups
            )
            ratio[(site.code, sku)] = 1.0 if needed <= 0 else min(1.0, spare / needed)
            best = totals.abc_class(site.code, sku)
            if best == "A" and needed > spare and site.backups:
                shortfalls.append(Shortfall(site.code, sku, best, units / hours, needed, spare))
    return ratio, shortfalls


def site_sku_demand(totals: SiteSkuTotals, hours: int) -> tuple[SiteSku, ...]:
    """Per site, the demand for every SKU that is class A at some site, with its class there.

    A failover needs the failed site's critical SKUs and, for each, what its targets' own orders
    will take of their stock: so the rows of a SKU critical anywhere are kept for every site.
    """
    critical = {sku for per_site in totals.classes.values() for sku, c in per_site.items() if c == "A"}
    rows = [
        SiteSku(
            site=site,
            sku=sku,
            abc_class=totals.abc_class(site, sku),
            critical=totals.abc_class(site, sku) == "A",
            units_per_hour=units / hours,
            orders_per_hour=totals.orders.get((site, sku), 0.0) / hours,
            revenue_per_hour=totals.revenue.get((site, sku), 0.0) / hours,
        )
        for (site, sku), units in totals.units.items()
        if sku in critical
    ]
    return tuple(sorted(rows, key=lambda r: (r.site, -r.revenue_per_hour, r.sku)))


def preposition_plan(
    shortfalls: list[Shortfall], weights_by_site: dict[str, dict[str, float]], world: World
) -> tuple[PrepositionLine, ...]:
    """Split each shortfall across the site's backups by the share of its orders each would ship."""
    sites = {s.code: s for s in world.sites}
    lines: list[PrepositionLine] = []
    for gap in shortfalls:
        backups = list(sites[gap.site].backups)
        # backups with no spare capacity at all: split_by_weight stocks the first one anyway
        weights = {b: weights_by_site.get(gap.site, {}).get(b, 0.0) for b in backups}
        for backup, qty in split_by_weight(gap.shortfall, weights).items():
            if qty > 0:
                lines.append(
                    PrepositionLine(
                        site=gap.site,
                        sku=gap.sku,
                        site_abc_class=gap.site_abc_class,
                        demand_per_hour=gap.demand_per_hour,
                        units_needed=gap.units_needed,
                        backup_spare_units=gap.backup_spare_units,
                        shortfall=gap.shortfall,
                        backup=backup,
                        quantity=qty,
                    )
                )
    return tuple(sorted(lines, key=lambda x: (x.site, -x.shortfall, x.sku, x.backup)))


def single_points_of_failure(ranks: tuple[SkuRank, ...], world: World, hours: int) -> tuple[Spof, ...]:
    """SKUs stocked at exactly one site, heaviest demand first."""
    out = [
        Spof(
            sku=r.sku,
            name=r.name,
            site=r.stocked_at[0],
            units_on_hand=world.stock.get((r.stocked_at[0], r.sku), 0),
            orders_per_hour=r.orders / hours,
            revenue_per_hour=r.revenue / hours,
            revenue_share=r.revenue_share,
        )
        for r in ranks
        if len(r.stocked_at) == 1
    ]
    return tuple(sorted(out, key=lambda s: (-s.revenue_per_hour, s.sku)))

"""What a BIA run produces: plain frozen dataclasses, serialisable with `BiaResult.to_json_dict()`.

Hour-of-week arrays have 168 entries, Monday 00:00 local first. Rates are per hour of the observed
period; money is in the run's currency.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bia.params import BiaParams

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class Rate:
    """A per-hour rate: the period's mean, the busiest single hour, and the mean by hour of the week."""

    mean: float
    peak: float
    by_hour_of_week: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Demand:
    orders: int
    revenue: float
    orders_per_hour: Rate
    revenue_per_hour: Rate
    customers_per_hour: Rate  # distinct customers within an hour, averaged over hours


@dataclass(frozen=True, slots=True)
class LossPoint:
    """Expected loss of one outage of `duration_hours`, averaged over every start hour of the week.

    `failover` True means backups (sites) or fallbacks (integrations) take what they can, and the
    operator fails over only when that costs less than waiting. `worst_start_total` is the loss
    when the outage starts at the worst hour of the week (`worst_start_hour_of_week`).
    """

    duration_hours: float
    failover: bool
    orders_affected: float
    revenue_at_risk: float  # revenue of the orders no one can ship on time
    late_orders: float
    lost_margin: float
    late_cost: float
    churn_cost: float
    reroute_cost: float
    total: float
    worst_start_total: float
    worst_start_hour_of_week: int


@dataclass(frozen=True, slots=True)
class SiteImpact:
    code: str
    name: str
    region: str
    capacity_per_hour: int
    backups: tuple[str, ...]
    demand: Demand
    absorbable_share: float  # of the site's orders, the share its backups can take (stock and capacity)
    stock_share: float  # of the site's orders, the share whose SKUs the backups hold for coverage_hours
    reroute_extra_transit_hours: float  # mean over rerouted orders
    reroute_extra_cost_per_order: float
    capacity_runs_out_at: str | None  # the backup that saturates first when this site is out
    losses: tuple[LossPoint, ...]
    rto_hours: float
    rpo_seconds: int
    tier: int

    @property
    def expected_orders_per_hour(self) -> float:
        return self.demand.orders_per_hour.mean

    @property
    def expected_orders_by_hour_of_week(self) -> tuple[float, ...]:
        return self.demand.orders_per_hour.by_hour_of_week

    def loss(self, duration_hours: float, failover: bool) -> LossPoint:
        return _loss(self.losses, duration_hours, failover)


@dataclass(frozen=True, slots=True)
class IntegrationImpact:
    code: str
    name: str
    kind: str
    fallback: str | None
    sites: tuple[str, ...]  # sites whose orders need it
    channels: tuple[str, ...]  # channels whose orders need it
    all_orders: bool  # scope "all": every order needs it
    demand: Demand
    absorbable_share: float  # share of its orders the fallback can take
    losses: tuple[LossPoint, ...]
    rto_hours: float
    tier: int

    def loss(self, duration_hours: float, failover: bool) -> LossPoint:
        return _loss(self.losses, duration_hours, failover)


def _loss(losses: tuple[LossPoint, ...], duration_hours: float, failover: bool) -> LossPoint:
    for point in losses:
        if point.duration_hours == duration_hours and point.failover == failover:
            return point
    raise KeyError(f"no loss evaluated for {duration_hours} h (failover={failover})")


@dataclass(frozen=True, slots=True)
class SkuRank:
    sku: str
    name: str
    rank_by_revenue: int
    rank_by_orders: int
    orders: int
    units: int
    revenue: float
    revenue_share: float
    cumulative_revenue_share: float
    orders_share: float
    cumulative_orders_share: float
    abc_class: str  # by revenue
    abc_class_by_orders: str
    critical: bool  # class A by revenue or by orders
    stocked_at: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Pareto:
    skus: int
    class_a: int  # the cut-off: class A is the first `class_a` SKUs by revenue
    class_b: int
    class_c: int
    class_a_share_of_skus: float
    class_a_share_of_revenue: float


@dataclass(frozen=True, slots=True)
class PrepositionLine:
    """Units of one critical SKU to place at one backup so it covers `coverage_hours` of the site."""

    site: str
    sku: str
    site_abc_class: str
    demand_per_hour: float  # the site's mean units per hour
    units_needed: int  # demand over the coverage horizon, rounded up
    backup_spare_units: int  # what the backups hold beyond their own demand over the horizon
    shortfall: int
    backup: str
    quantity: int


@dataclass(frozen=True, slots=True)
class SiteSku:
    """One site's demand for one SKU that is critical somewhere (class A at some site).

    Stored for every site that ships such a SKU, so a failover can weigh a target's own need of a
    SKU against what the failed site's orders would ask of it (`failover.safety`'s target_stock).
    """

    site: str
    sku: str
    abc_class: str  # at this site: the better of its class by revenue and by orders
    critical: bool  # class A at this site
    units_per_hour: float
    orders_per_hour: float
    revenue_per_hour: float


@dataclass(frozen=True, slots=True)
class Spof:
    """A SKU stocked at one site only: an outage there stops every order for it."""

    sku: str
    name: str
    site: str
    units_on_hand: int
    orders_per_hour: float
    revenue_per_hour: float
    revenue_share: float


@dataclass(frozen=True, slots=True)
class FailoverRoute:
    """During an outage of `site`, who ships the region's orders; backup None = nobody, they wait."""

    site: str
    region: str
    backup: str | None
    orders_per_hour: float
    share_of_region: float
    extra_transit_hours: float | None
    extra_cost_per_order: float | None
    late: bool  # the extra transit breaks the delivery promise


@dataclass(frozen=True, slots=True)
class FailoverCapacity:
    """How close one backup comes to its capacity when `site` is out (mean load by hour of week)."""

    site: str
    backup: str
    capacity_per_hour: int
    own_peak_orders_per_hour: float
    offered_peak_orders_per_hour: float  # own load + what the failed site sends, at the worst hour
    peak_utilisation: float
    worst_hour_of_week: int
    saturated_hours_per_week: int  # hours of the week it cannot take everything offered
    runs_out_first: bool


@dataclass(frozen=True, slots=True)
class Totals:
    orders: int
    lines: int
    revenue: float
    customers: int


@dataclass(frozen=True, slots=True)
class BiaResult:
    generated_at: datetime
    world: str
    params: BiaParams
    period_start: datetime
    period_end: datetime
    period_hours: int
    totals: Totals
    sites: tuple[SiteImpact, ...]
    integrations: tuple[IntegrationImpact, ...]
    skus: tuple[SkuRank, ...]
    pareto: Pareto
    preposition: tuple[PrepositionLine, ...]
    spofs: tuple[Spof, ...]
    failover_routes: tuple[FailoverRoute, ...]
    failover_capacity: tuple[FailoverCapacity, ...]
    site_skus: tuple[SiteSku, ...] = ()

    def site(self, code: str) -> SiteImpact:
        for impact in self.sites:
            if impact.code == code:
                return impact
        raise KeyError(code)

    def integration(self, code: str) -> IntegrationImpact:
        for impact in self.integrations:
            if impact.code == code:
                return impact
        raise KeyError(code)

    def to_json_dict(self) -> dict[str, Any]:
        """Return the document described by bia/bia.schema.json (plain JSON types only)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "generated_at": self.generated_at.isoformat(),
            "world": self.world,
            "currency": self.params.currency,
            "params": self.params.to_json_dict(),
            "period": {
                "start": self.period_start.isoformat(),
                "end": self.period_end.isoformat(),
                "hours": self.period_hours,
            },
            "totals": asdict(self.totals),
            "sites": [_plain(asdict(s)) for s in self.sites],
            "integrations": [_plain(asdict(i)) for i in self.integrations],
            "skus": [_plain(asdict(s)) for s in self.skus],
            "pareto": asdict(self.pareto),
            "preposition": [asdict(p) for p in self.preposition],
            "spofs": [asdict(s) for s in self.spofs],
            "failover": {
                "routes": [asdict(r) for r in self.failover_routes],
                "capacity": [asdict(c) for c in self.failover_capacity],
            },
            "site_skus": [asdict(x) for x in self.site_skus],
        }


def _plain(value: Any) -> Any:
    """Turn tuples into lists all the way down, so the dict equals its JSON round trip."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class SiteTarget:
    """What the failover safety rules and `/v1/sites` need from the latest BIA, per site."""

    code: str
    tier: int
    rto_hours: float
    rpo_seconds: int
    expected_orders_per_hour: float
    peak_orders_per_hour: float
    expected_orders_by_hour_of_week: tuple[float, ...]

    def expected_orders_at(self, moment: datetime, timezone: str = "Asia/Seoul") -> float:
        """Expected orders per hour at `moment` (aware, or naive local), from the hour-of-week profile."""
        local = moment.astimezone(ZoneInfo(timezone)) if moment.tzinfo else moment
        return self.expected_orders_by_hour_of_week[local.weekday() * 24 + local.hour]


def site_skus(doc: Mapping[str, Any]) -> tuple[SiteSku, ...]:
    """Read the per-site demand of critical SKUs from a stored document (empty for documents older
    than it)."""
    return tuple(SiteSku(**row) for row in doc.get("site_skus", ()))


def site_targets(result: BiaResult | Mapping[str, Any]) -> dict[str, SiteTarget]:
    """Read per-site tier, RTO, RPO and expected demand from a result or its stored JSON document."""
    doc = result.to_json_dict() if isinstance(result, BiaResult) else result
    out: dict[str, SiteTarget] = {}
    for site in doc["sites"]:
        orders = site["demand"]["orders_per_hour"]
        out[site["code"]] = SiteTarget(
            code=site["code"],
            tier=int(site["tier"]),
            rto_hours=float(site["rto_hours"]),
            rpo_seconds=int(site["rpo_seconds"]),
            expected_orders_per_hour=float(orders["mean"]),
            peak_orders_per_hour=float(orders["peak"]),
            expected_orders_by_hour_of_week=tuple(float(x) for x in orders["by_hour_of_week"]),
        )
    return out

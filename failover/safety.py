"""Safety rules for operator failover and failback: each rule has a name, an outcome and its numbers.

Every failover and failback evaluates every rule; the dry run reports them all, a real change is
refused (409, naming the first failing rule) unless forced with a reason. A site *serves* when
routing could send it an order: accepting, not down, not impaired, breaker not open (the
site-wide part of `failover.routing.exclusion_reason`). The coverage rules refuse only what the
change itself breaks: failing over a site that serves nothing already removes no capacity and no
region's coverage, so an outage never blocks the failover meant to answer it.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from control_plane.domain import (
    BreakerState,
    Conflict,
    FieldError,
    Health,
    InvalidInput,
    Region,
    SiteState,
    split_by_weight,
)
from failover.eta import EtaModel

MIN_ACCEPTING_SITES = "min_accepting_sites"
REGION_COVERAGE = "region_coverage"
TARGET_CAPACITY = "target_capacity"
TARGET_STOCK = "target_stock"
SITE_HEALTHY = "site_healthy"
# enforced by the runtime lock around a site's change, not here; named so the 409 uses one spelling
ONE_CHANGE_PER_SITE = "one_change_per_site"

Number = float | int | str


@dataclass(frozen=True, slots=True)
class SafetyPolicy:
    min_accepting_sites: int = 2
    capacity_margin: float = 1.2  # targets must have this much more spare than the load they take
    health_required_for_failback: bool = True
    target_stock: Literal["warn", "refuse"] = "warn"  # targets short of critical stock: flag or refuse


@dataclass(frozen=True, slots=True)
class RuleResult:
    name: str
    ok: bool
    detail: str
    numbers: dict[str, Number] = field(default_factory=dict)
    warning: bool = False  # passed, but flagged: a rule set to warn found what it would refuse
    rows: tuple[dict[str, Number], ...] = ()  # per-item findings (target_stock: SKU x target)

    def to_json_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "ok": self.ok,
            "warning": self.warning,
            "detail": self.detail,
            "numbers": dict(self.numbers),
            "rows": [dict(r) for r in self.rows],
        }


@dataclass(frozen=True, slots=True)
class CriticalSku:
    """A critical SKU of the failed site (the BIA's class A there) and its demand there."""

    sku: str
    units_per_hour: float
    orders_per_hour: float


@dataclass(frozen=True, slots=True)
class StockCheck:
    """What the target_stock rule reads: the failed site's critical SKUs from the latest BIA, every
    site's own demand for them, free stock now, and the units the in-flight orders would take."""

    critical: tuple[CriticalSku, ...]
    own_units_per_hour: Mapping[tuple[str, str], float]  # (site, sku): that site's own demand
    available: Mapping[tuple[str, str], int]  # (site, sku): units free to reserve now
    in_flight_units: Mapping[str, int]  # sku: units of the orders the failover moves
    hours: float  # coverage horizon


def serves(state: SiteState) -> bool:
    """Whether routing could send this site an order now (stock and load aside)."""
    return (
        state.accepting
        and state.health is not Health.DOWN
        and not state.impaired
        and state.breaker is not BreakerState.OPEN
    )


def spare_capacity(state: SiteState) -> int:
    """Orders the site can still take this hour; 0 for a site that serves none."""
    if not serves(state):
        return 0
    return max(0, state.site.capacity_per_hour - state.routed_this_hour)


def expected_hourly_demand(
    bia_orders_per_hour: float | None, recent_orders: int, recent_window_hours: float
) -> float:
    """The failed site's expected orders per hour: the BIA's figure when present, else recent intake."""
    if bia_orders_per_hour is not None:
        return bia_orders_per_hour
    if recent_window_hours <= 0:
        return 0.0
    return recent_orders / recent_window_hours


def resolve_targets(
    failed_site: str, sites: Sequence[SiteState], targets: Collection[str] | None
) -> tuple[SiteState, ...]:
    """The sites moved orders may go to, in `sites` order; `None` means every other site.

    Raises InvalidInput for an empty list, an unknown code or the failed site itself: each is an
    operator's mistake that would otherwise quietly hold every moved order.
    """
    if targets is None:
        return tuple(s for s in sites if s.site.code != failed_site)
    wanted = list(targets)
    known = {s.site.code for s in sites}
    errors = [FieldError("targets", "must name at least one site")] if not wanted else []
    for i, code in enumerate(wanted):
        if code == failed_site:
            errors.append(FieldError(f"targets[{i}]", f"{code} is the site being failed over"))
        elif code not in known:
            errors.append(FieldError(f"targets[{i}]", f"unknown site {code}"))
    if errors:
        raise InvalidInput("invalid failover targets", errors)
    chosen = set(wanted)
    return tuple(s for s in sites if s.site.code in chosen)


def evaluate_failover(
    site: str,
    sites: Sequence[SiteState],
    regions: Sequence[Region],
    targets: Collection[str] | None,
    moved_orders: int,
    expected_hourly_demand: float,
    policy: SafetyPolicy,
    eta_model: EtaModel,
    now: datetime,
    stock: StockCheck | None = None,
) -> list[RuleResult]:
    """Evaluate every failover rule for taking `site` out of routing (all of them, for the dry run).

    `now` is accepted so that time-bound rules (change windows) need no new signature; no rule
    reads it yet.
    """
    del now
    target_states = resolve_targets(site, sites, targets)
    return [
        _min_accepting_sites(site, sites, policy),
        _region_coverage(site, sites, regions, eta_model),
        _target_capacity(target_states, moved_orders, expected_hourly_demand, policy),
        target_stock(site, target_states, stock, policy.target_stock),
    ]


def _min_accepting_sites(site: str, sites: Sequence[SiteState], policy: SafetyPolicy) -> RuleResult:
    before = [s.site.code for s in sites if serves(s)]
    after = [code for code in before if code != site]
    numbers: dict[str, Number] = {
        "min_accepting_sites": policy.min_accepting_sites,
        "accepting_before": len(before),
        "accepting_after": len(after),
    }
    if len(after) == len(before):
        detail = f"{site} serves no orders already: failing it over leaves {len(after)} accepting"
        return RuleResult(MIN_ACCEPTING_SITES, True, detail, numbers)
    ok = len(after) >= policy.min_accepting_sites
    detail = (
        f"{len(after)} sites would stay accepting ({', '.join(after) or 'none'}), "
        f"at least {policy.min_accepting_sites} required"
    )
    return RuleResult(MIN_ACCEPTING_SITES, ok, detail, numbers)


def _best_transit(
    region: Region, states: Sequence[SiteState], eta_model: EtaModel
) -> tuple[str, float] | None:
    """The serving site nearest (in transit hours) to the region's centroid, if any."""
    options = [(eta_model.transit_hours(s.site, region.centroid), s.site.code) for s in states if serves(s)]
    if not options:
        return None
    hours, code = min(options)
    return code, hours


def _region_coverage(
    site: str, sites: Sequence[SiteState], regions: Sequence[Region], eta_model: EtaModel
) -> RuleResult:
    others = [s for s in sites if s.site.code != site]
    lost: list[tuple[Region, tuple[str, float] | None]] = []
    already_uncovered: list[str] = []
    for region in regions:
        before = _best_transit(region, sites, eta_model)
        if before is None or before[1] > region.max_transit_hours:
            already_uncovered.append(region.code)  # not this change's doing: reported, not refused
            continue
        after = _best_transit(region, others, eta_model)
        if after is None or after[1] > region.max_transit_hours:
            lost.append((region, after))
    numbers: dict[str, Number] = {"regions": len(regions), "regions_losing_coverage": len(lost)}
    if already_uncovered:
        numbers["regions_already_uncovered"] = len(already_uncovered)
    if not lost:
        detail = "every region keeps an accepting site within its max transit time"
        if already_uncovered:
            detail += f" (already without one: {', '.join(already_uncovered)})"
        return RuleResult(REGION_COVERAGE, True, detail, numbers)
    # the numbers carry the first region lost; the detail names them all
    region, best = lost[0]
    numbers["region"] = region.code
    numbers["max_transit_hours"] = region.max_transit_hours
    if best is not None:
        numbers["best_site"] = best[0]
        numbers["best_transit_hours"] = round(best[1], 2)
    parts = [
        f"{r.code} (best {b[0]} {b[1]:.1f} h > {r.max_transit_hours:g} h)" if b else f"{r.code} (no site)"
        for r, b in lost
    ]
    detail = f"without {site}, no accepting site within max transit time for: {', '.join(parts)}"
    return RuleResult(REGION_COVERAGE, False, detail, numbers)


def _target_capacity(
    targets: Sequence[SiteState], moved_orders: int, demand: float, policy: SafetyPolicy
) -> RuleResult:
    spare = sum(spare_capacity(s) for s in targets)
    needed = (moved_orders + demand) * policy.capacity_margin
    numbers: dict[str, Number] = {
        "spare_next_hour": spare,
        "moved_orders": moved_orders,
        "expected_hourly_demand": round(demand, 2),
        "margin": policy.capacity_margin,
        "needed": round(needed, 2),
    }
    ok = spare >= needed
    relation = ">=" if ok else "<"
    detail = (
        f"targets' spare next-hour capacity {spare} {relation} "
        f"({moved_orders} moved + {demand:.1f} expected/h) x {policy.capacity_margin:g} = {needed:.1f}"
    )
    return RuleResult(TARGET_CAPACITY, ok, detail, numbers)


def target_stock(
    site: str,
    targets: Sequence[SiteState],
    check: StockCheck | None,
    mode: Literal["warn", "refuse"] = "warn",
) -> RuleResult:
    """Whether the targets hold the failed site's critical SKUs for the coverage horizon.

    Per SKU the need is the failed site's demand over the horizon plus what its in-flight orders
    take; a serving target offers its free stock less its own demand over the horizon. Stock is
    pooled (routing sends each order where the stock is); a pooled shortfall is split over the
    serving targets by their spare capacity, and each row's `shortfall` is the units to place at
    that target (its part, plus what it lacks for its own orders): stocked, the rule passes.
    Orders with a short SKU are held once the pooled stock runs out: counted over the horizon as
    an estimate (an order with two short SKUs counts twice, so it errs high).
    """
    if check is None or not check.critical:
        detail = "no BIA run with the critical SKUs of each site yet: stock not checked (POST /v1/bia/runs)"
        return RuleResult(TARGET_STOCK, True, detail, {"critical_skus": 0})
    hours = check.hours
    serving = [t for t in targets if serves(t)]
    weights = {t.site.code: float(spare_capacity(t)) for t in serving}
    rows: list[dict[str, Number]] = []
    short: dict[str, int] = {}  # sku: pooled shortfall
    held = 0.0
    for c in check.critical:
        need = math.ceil(c.units_per_hour * hours - 1e-9) + check.in_flight_units.get(c.sku, 0)
        # free stock less the target's own demand over the horizon; below zero, the target cannot
        # cover even its own orders, and units placed there go to those first
        net = {
            code: check.available.get((code, c.sku), 0)
            - math.ceil(check.own_units_per_hour.get((code, c.sku), 0.0) * hours - 1e-9)
            for code in weights
        }
        pooled = sum(max(0, n) for n in net.values())
        shortfall = max(0, need - pooled)
        if shortfall == 0:
            continue
        short[c.sku] = shortfall
        flow = max(0, pooled - check.in_flight_units.get(c.sku, 0))
        covered_hours = flow / c.units_per_hour if c.units_per_hour > 0 else hours
        held += c.orders_per_hour * max(0.0, hours - covered_hours)
        for code, units in split_by_weight(shortfall, weights).items():
            # the units to place at the target: its part of the shortfall, plus its own deficit
            rows.append(
                {
                    "target": code,
                    "sku": c.sku,
                    "needed": need,
                    "spare": max(0, net[code]),
                    "shortfall": units + max(0, -net[code]),
                }
            )
        if not weights:  # no serving target: the whole need is short, at no site in particular
            rows.append({"target": "", "sku": c.sku, "needed": need, "spare": 0, "shortfall": shortfall})
    numbers: dict[str, Number] = {
        "critical_skus": len(check.critical),
        "short_skus": len(short),
        "coverage_hours": hours,
        "orders_held_over_horizon": round(held, 1),
        "mode": mode,
    }
    if not short:
        detail = (
            f"targets hold every one of {site}'s {len(check.critical)} critical SKUs "
            f"for {hours:g} h of its demand"
        )
        return RuleResult(TARGET_STOCK, True, detail, numbers)
    worst = sorted(short, key=lambda sku: (-short[sku], sku))
    numbers["sku"], numbers["shortfall"] = worst[0], short[worst[0]]
    per_sku = []
    for sku in worst[:5]:
        parts = [f"{r['target']} {r['shortfall']}" for r in rows if r["sku"] == sku and r["target"]]
        per_sku.append(f"{sku} short {short[sku]}" + (f" ({', '.join(parts)})" if parts else ""))
    more = f" and {len(short) - 5} more" if len(short) > 5 else ""
    detail = (
        f"targets lack {len(short)} of {site}'s {len(check.critical)} critical SKUs for {hours:g} h: "
        f"{'; '.join(per_sku)}{more}; about {held:.0f} orders would be held over {hours:g} h. "
        f"Remedy: stock them as the BIA's pre-position plan says (GET /v1/bia/latest, preposition)"
    )
    refuse = mode == "refuse"
    return RuleResult(TARGET_STOCK, not refuse, detail, numbers, warning=not refuse, rows=tuple(rows))


def evaluate_failback(site_state: SiteState, policy: SafetyPolicy) -> list[RuleResult]:
    """Evaluate every failback rule for reopening routing to `site_state`'s site."""
    numbers: dict[str, Number] = {
        "health": site_state.health.value,
        "breaker": site_state.breaker.value,
        "impaired": int(site_state.impaired),
    }
    code = site_state.site.code
    if not policy.health_required_for_failback:
        return [RuleResult(SITE_HEALTHY, True, "health is not required for failback by policy", numbers)]
    # degraded and unknown refuse too: reopening routing to a site we cannot vouch for invites a
    # second failover; `force` is there for the operator who knows better
    problems = []
    if site_state.health is not Health.HEALTHY:
        problems.append(f"health is {site_state.health.value}")
    if site_state.breaker is BreakerState.OPEN:
        problems.append("breaker is open")
    if site_state.impaired:
        problems.append("an integration it depends on is down")
    if problems:
        return [RuleResult(SITE_HEALTHY, False, f"{code} is not healthy: {'; '.join(problems)}", numbers)]
    return [RuleResult(SITE_HEALTHY, True, f"{code} is healthy", numbers)]


def refusal(results: Sequence[RuleResult]) -> RuleResult | None:
    """The first failing rule, which a refused change names; None when every rule passes."""
    return next((r for r in results if not r.ok), None)


def as_conflict(result: RuleResult) -> Conflict:
    """The domain error a refused change raises (409 with the rule's name and numbers)."""
    details: dict[str, object] = dict(result.numbers)
    if result.rows:
        details["rows"] = [dict(r) for r in result.rows]
    return Conflict(f"{result.name}: {result.detail}", rule=result.name, details=details)


def enforce(results: Sequence[RuleResult], force: bool, reason: str | None) -> tuple[RuleResult, ...]:
    """Refuse the change unless every rule passes or it is forced with a reason.

    Returns the failing rules a `force` overrode, for the audit event; raises Conflict naming the
    first failing rule, or InvalidInput when `force` comes without a reason.
    """
    failing = tuple(r for r in results if not r.ok)
    if not failing:
        return ()
    if not force:
        raise as_conflict(failing[0])
    if reason is None or not reason.strip():
        raise InvalidInput("force needs a reason", [FieldError("reason", "required when force is true")])
    return failing

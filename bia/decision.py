"""What each failover option costs the business, from the latest BIA and live state, and which to take.

At the moment of a failover an operator chooses where the failed site's orders go: the default
targets, one backup, a set of their own, or nowhere (hold them until the site is back). Each option
is priced with the BIA's own model (`bia.loss`) for the hour the decision is taken:

* the site's expected orders and revenue this hour of the week, split over its regions as the BIA
  saw them, go to the option's targets nearest first (the BIA's allocation, `allocate_hour`) up to
  each target's live spare capacity, less the orders whose critical SKUs the targets cannot stock;
* an order no target takes waits for the site: it is *at risk* (no one ships it on time), and so is
  a moved order whose extra transit exceeds the promise slack;
* an order at risk costs what the BIA charges a late one (late-order cost, the margin of the share
  cancelled, the churned customer's lifetime value); a moved order adds its extra fulfilment cost.

The in-flight orders at the site come from the failover plan (late, held) and add a one-off cost.
The recommendation is the option with the lowest cost over the first hour (one-off + one hour of
flow) among those that pass every safety rule. Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from bia.failover_map import allocate_hour
from bia.geo import backup_preference, eta_hours, fulfilment_cost
from bia.params import BiaParams
from control_plane.domain import Region, Site

HOLD = "hold"


@dataclass(frozen=True, slots=True)
class DemandProfile:
    """One site's expected demand by hour of the week and its region mix, from a stored BIA document."""

    site: str
    orders_by_hour_of_week: tuple[float, ...]
    revenue_by_hour_of_week: tuple[float, ...]
    region_shares: Mapping[str, float]
    params: BiaParams
    bia_generated_at: str

    @classmethod
    def from_document(cls, doc: Mapping[str, Any], site: str) -> DemandProfile | None:
        """Read the profile of `site`; None when the document does not analyse it."""
        row = next((s for s in doc.get("sites", ()) if s["code"] == site), None)
        if row is None:
            return None
        by_region: dict[str, float] = {}
        for route in doc.get("failover", {}).get("routes", ()):
            if route["site"] == site:
                by_region[route["region"]] = by_region.get(route["region"], 0.0) + route["orders_per_hour"]
        total = sum(by_region.values())
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in doc.get("params", {}).items()}
        known = set(BiaParams.__dataclass_fields__)
        return cls(
            site=site,
            orders_by_hour_of_week=tuple(row["demand"]["orders_per_hour"]["by_hour_of_week"]),
            revenue_by_hour_of_week=tuple(row["demand"]["revenue_per_hour"]["by_hour_of_week"]),
            region_shares={r: v / total for r, v in sorted(by_region.items())} if total > 0 else {},
            params=BiaParams(**{k: v for k, v in values.items() if k in known}),
            bia_generated_at=str(doc.get("generated_at", "")),
        )

    def at(self, moment: datetime) -> tuple[float, float]:
        """Expected orders and revenue per hour at `moment` (aware), by the local hour of the week."""
        local = moment.astimezone(self.params.zone)
        how = local.weekday() * 24 + local.hour
        return self.orders_by_hour_of_week[how], self.revenue_by_hour_of_week[how]


@dataclass(frozen=True, slots=True)
class OptionFacts:
    """What live state and the failover plan say about one option."""

    name: str
    targets: tuple[str, ...]  # the serving sites it may send orders to; empty for hold
    spare_per_hour: Mapping[str, float]  # each target's spare capacity this hour
    stock_held_per_hour: float  # orders per hour the targets lack critical stock for (target_stock)
    in_flight: int  # orders live at the failed site now
    in_flight_late: int  # moved, but arriving after their promise
    in_flight_held: int  # no target can take them now (or, for hold, left waiting at the site)
    notices: int  # delay notices the move sends


@dataclass(frozen=True, slots=True)
class OptionCost:
    """One option's figures; per-hour figures are for the hour of the decision."""

    orders_per_hour: float
    absorbed_per_hour: float
    held_per_hour: float
    late_per_hour: float  # moved, but late because of extra transit
    orders_at_risk_per_hour: float  # held + late
    revenue_at_risk_per_hour: float
    extra_transit_hours: float | None  # mean over moved orders; None when none move
    extra_cost_per_order: float | None
    extra_cost_per_hour: float
    cost_per_hour: float  # at-risk orders at the BIA's late-order cost + extra fulfilment cost
    one_off_cost: float  # the in-flight orders left late or held
    cost_first_hour: float  # one-off + one hour: what the recommendation compares

    def to_json_dict(self) -> dict[str, object]:
        def r(x: float | None, digits: int = 2) -> float | None:
            return None if x is None else round(x, digits)

        return {
            "orders_per_hour": r(self.orders_per_hour),
            "absorbed_per_hour": r(self.absorbed_per_hour),
            "held_per_hour": r(self.held_per_hour),
            "late_per_hour": r(self.late_per_hour),
            "orders_at_risk_per_hour": r(self.orders_at_risk_per_hour),
            "revenue_at_risk_per_hour": r(self.revenue_at_risk_per_hour, 0),
            "extra_transit_hours": r(self.extra_transit_hours),
            "extra_cost_per_order": r(self.extra_cost_per_order, 0),
            "extra_cost_per_hour": r(self.extra_cost_per_hour, 0),
            "cost_per_hour": r(self.cost_per_hour, 0),
            "one_off_cost": r(self.one_off_cost, 0),
            "cost_first_hour": r(self.cost_first_hour, 0),
        }


def late_order_cost(params: BiaParams, revenue_per_order: float) -> float:
    """The BIA's expected cost of one order that misses its promise (bia.loss, per order)."""
    return (
        params.late_order_cost
        + params.gross_margin * params.cancel_probability * revenue_per_order
        + params.churn_probability * params.customer_lifetime_value
    )


def option_cost(
    facts: OptionFacts,
    profile: DemandProfile,
    failed: Site,
    sites: Mapping[str, Site],
    regions: Mapping[str, Region],
    now: datetime,
) -> OptionCost:
    """Price one option for the hour of `now` (see the module docstring for the model)."""
    params = profile.params
    orders, revenue = profile.at(now)
    per_order = revenue / orders if orders > 0 else 0.0
    unit_late = late_order_cost(params, per_order)
    stock_short = min(orders, facts.stock_held_per_hour) if facts.targets else 0.0
    movable = [(r, orders * share) for r, share in profile.region_shares.items() if r in regions]
    movable.sort(key=lambda item: (-item[1], item[0]))
    eligible = [(r, o * (1.0 - stock_short / orders)) for r, o in movable] if orders > 0 else []
    routing = replace(failed, backups=facts.targets)
    prefs = {r: backup_preference(routing, regions[r], sites, params) for r, _ in eligible}
    taken, _ = allocate_hour(eligible, prefs, facts.spare_per_hour)
    absorbed = late = transit = extra = 0.0
    for (r, b), n in taken.items():
        region = regions[r]
        hours = eta_hours(sites[b], region, params) - eta_hours(failed, region, params)
        absorbed += n
        transit += n * hours
        extra += n * max(
            0.0, fulfilment_cost(sites[b], region, params) - fulfilment_cost(failed, region, params)
        )
        if hours > params.promise_slack_hours:
            late += n
    held = max(0.0, orders - absorbed)
    at_risk = held + late
    cost_per_hour = at_risk * unit_late + extra
    one_off = (facts.in_flight_late + facts.in_flight_held) * unit_late
    return OptionCost(
        orders_per_hour=orders,
        absorbed_per_hour=absorbed,
        held_per_hour=held,
        late_per_hour=late,
        orders_at_risk_per_hour=at_risk,
        revenue_at_risk_per_hour=at_risk * per_order,
        extra_transit_hours=transit / absorbed if absorbed > 0 else None,
        extra_cost_per_order=extra / absorbed if absorbed > 0 else None,
        extra_cost_per_hour=extra,
        cost_per_hour=cost_per_hour,
        one_off_cost=one_off,
        cost_first_hour=one_off + cost_per_hour,
    )


@dataclass(frozen=True, slots=True)
class Candidate:
    """An option as the recommendation weighs it."""

    name: str
    cost: float  # cost over the first hour
    failing_rule: str | None  # the first safety rule it breaks; None when it passes every one


@dataclass(frozen=True, slots=True)
class Recommendation:
    option: str | None  # None: every option breaks a rule
    reason: str

    def to_json_dict(self) -> dict[str, object]:
        return {"option": self.option, "reason": self.reason}


def recommend(candidates: Sequence[Candidate], currency: str) -> Recommendation:
    """The cheapest option that passes every safety rule (ties: the earlier listed), saying why."""
    ranked = sorted(enumerate(candidates), key=lambda pair: (pair[1].cost, pair[0]))
    passing = [c for _, c in ranked if c.failing_rule is None]
    if not passing:
        broken = "; ".join(f"{c.name} breaks {c.failing_rule}" for _, c in ranked)
        return Recommendation(None, f"every option breaks a safety rule ({broken}): fix the cause or force")
    best = passing[0]
    cheaper = [c for _, c in ranked if c.cost < best.cost and c.failing_rule is not None]
    reason = (
        f"{best.name}: the cheapest of {len(passing)} option(s) that pass every safety rule, "
        f"{_money(best.cost, currency)} over the first hour"
    )
    others = passing[1:3]
    if others:
        reason += " (next: " + ", ".join(f"{c.name} {_money(c.cost, currency)}" for c in others) + ")"
    if cheaper:
        reason += "; cheaper but refused: " + ", ".join(
            f"{c.name} {_money(c.cost, currency)} breaks {c.failing_rule}" for c in cheaper
        )
    return Recommendation(best.name, reason)


def _money(amount: float, currency: str) -> str:
    return f"{amount:,.0f} {currency}"

"""The business side of a failover: the target_stock rule's inputs, and every option priced.

A dry run answers, beside the plan of the chosen targets, what each option would cost: the default
targets, each of the site's backups alone, the operator's own target set, and holding the orders
until the site is back. Each option is planned (`failover.plan`), checked against every safety
rule (`failover.safety`) and priced with the latest BIA (`bia.decision`); the recommendation is
the cheapest that passes every rule.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bia.decision import HOLD, Candidate, DemandProfile, OptionCost, OptionFacts, option_cost, recommend
from bia.results import SiteSku, site_skus, site_targets
from control_plane.domain import Region, Site, SiteState
from failover.eta import EtaModel
from failover.plan import InFlightOrder, plan_failover
from failover.safety import (
    TARGET_STOCK,
    CriticalSku,
    RuleResult,
    SafetyPolicy,
    StockCheck,
    evaluate_failover,
    refusal,
    serves,
)

DEFAULT = "default"


@dataclass(frozen=True, slots=True)
class BiaView:
    """What a failover reads from the latest BIA document, parsed once per failover."""

    doc: Mapping[str, Any]
    site_skus: tuple[SiteSku, ...]
    expected_now: Mapping[str, float]  # each site's expected orders per hour at this hour of the week
    coverage_hours: float

    @classmethod
    def read(cls, doc: Mapping[str, Any] | None, now: datetime) -> BiaView | None:
        if doc is None:
            return None
        zone = str(doc.get("params", {}).get("timezone", "Asia/Seoul"))
        return cls(
            doc=doc,
            site_skus=site_skus(doc),
            expected_now={code: t.expected_orders_at(now, zone) for code, t in site_targets(doc).items()},
            coverage_hours=float(doc.get("params", {}).get("coverage_hours", 24.0)),
        )

    def critical(self, site: str) -> tuple[CriticalSku, ...]:
        """The site's critical SKUs (class A there), busiest first."""
        return tuple(
            CriticalSku(x.sku, x.units_per_hour, x.orders_per_hour)
            for x in self.site_skus
            if x.site == site and x.critical
        )


def stock_check(
    bia: BiaView | None,
    site: str,
    orders: Sequence[InFlightOrder],
    available: Mapping[tuple[str, str], int],
    hours: float | None,
) -> StockCheck | None:
    """What target_stock reads for a failover of `site`; None when no BIA names its critical SKUs.

    `available` must hold the free stock of every critical SKU at every site; `hours` overrides the
    BIA's own coverage horizon.
    """
    critical = bia.critical(site) if bia is not None else ()
    if bia is None or not critical:
        return None
    wanted = {c.sku for c in critical}
    moving: Counter[str] = Counter()
    for o in orders:
        for line in o.lines:
            if line.sku in wanted:
                moving[line.sku] += line.qty
    return StockCheck(
        critical=critical,
        own_units_per_hour={(x.site, x.sku): x.units_per_hour for x in bia.site_skus if x.sku in wanted},
        available={k: v for k, v in available.items() if k[1] in wanted},
        in_flight_units=dict(moving),
        hours=hours if hours is not None else bia.coverage_hours,
    )


@dataclass(frozen=True, slots=True)
class OptionInputs:
    """Everything live an option is planned, checked and priced against."""

    site: str
    states: Sequence[SiteState]
    regions: Mapping[str, Region]
    orders: Sequence[InFlightOrder]
    stock: Mapping[tuple[str, str], int]
    check: StockCheck | None
    expected_demand: float
    policy: SafetyPolicy
    eta: EtaModel
    now: datetime


def price_options(
    inputs: OptionInputs, requested: Collection[str] | None, bia: BiaView | None
) -> dict[str, object]:
    """Every option with its plan figures, rules and cost, and the recommendation (the dry run's
    `options` and `recommendation`); without a BIA the options carry no cost and none is recommended."""
    sites = {s.site.code: s.site for s in inputs.states}
    choices: list[tuple[str, tuple[str, ...] | None]] = [(DEFAULT, None)]
    choices += [(f"backup:{b}", (b,)) for b in sites[inputs.site].backups if b in sites]
    wanted = tuple(sorted(set(requested))) if requested is not None else None
    requested_name = next((name for name, t in choices if t is not None and tuple(sorted(t)) == wanted), None)
    if wanted is not None and requested_name is None:
        requested_name = "requested"
        choices.append((requested_name, wanted))
    profile = DemandProfile.from_document(bia.doc, inputs.site) if bia is not None else None
    options: list[dict[str, object]] = []
    candidates: list[Candidate] = []
    for name, targets in choices:
        facts, rules, per_target = _plan_option(inputs, name, targets, bia)
        cost = _price(facts, profile, inputs, sites)
        options.append(_option_json(facts, targets, rules, per_target, cost, name == requested_name))
        if cost is not None:
            first = refusal(rules)
            candidates.append(Candidate(name, cost.cost_first_hour, first.name if first else None))
    # holding: nothing moves and no rule applies; every order waits for the site
    hold = OptionFacts(HOLD, (), {}, 0.0, len(inputs.orders), 0, len(inputs.orders), 0)
    hold_cost = _price(hold, profile, inputs, sites)
    options.append(_option_json(hold, (), [], {}, hold_cost, False))
    if profile is None or hold_cost is None:
        missing = "no BIA run yet" if bia is None else f"the latest BIA run does not analyse {inputs.site}"
        reason = f"{missing}: options are not priced (POST /v1/bia/runs), so none is recommended"
        return {"options": options, "recommendation": {"option": None, "reason": reason}}
    candidates.append(Candidate(HOLD, hold_cost.cost_first_hour, None))
    recommendation = recommend(candidates, profile.params.currency).to_json_dict()
    recommendation |= {"currency": profile.params.currency, "bia_generated_at": profile.bia_generated_at}
    return {"options": options, "recommendation": recommendation}


def _plan_option(
    inputs: OptionInputs, name: str, targets: tuple[str, ...] | None, bia: BiaView | None
) -> tuple[OptionFacts, list[RuleResult], dict[str, int]]:
    """Plan one option's move of the in-flight orders, check its rules, and read its targets' room."""
    plan = plan_failover(
        inputs.site, inputs.orders, inputs.states, inputs.stock, targets, inputs.eta, inputs.now
    )
    rules = evaluate_failover(
        inputs.site,
        inputs.states,
        list(inputs.regions.values()),
        targets,
        len(inputs.orders),
        inputs.expected_demand,
        inputs.policy,
        inputs.eta,
        inputs.now,
        inputs.check,
    )
    expected_now = bia.expected_now if bia is not None else {}
    spare = {}
    for s in inputs.states:
        code = s.site.code
        if code == inputs.site or not serves(s) or (targets is not None and code not in targets):
            continue
        # this hour the target also takes its own orders: the BIA's expected load, or what it has
        # taken so far if more; and the in-flight orders the plan sends it
        used = max(float(s.routed_this_hour), expected_now.get(code, 0.0)) + plan.per_target.get(code, 0)
        spare[code] = max(0.0, s.site.capacity_per_hour - used)
    facts = OptionFacts(
        name=name,
        targets=tuple(spare),
        spare_per_hour=spare,
        stock_held_per_hour=_stock_held_per_hour(rules),
        in_flight=len(inputs.orders),
        in_flight_late=plan.late,
        in_flight_held=len(plan.unplaceable),
        notices=len(plan.notices),
    )
    return facts, rules, plan.per_target


def _price(
    facts: OptionFacts, profile: DemandProfile | None, inputs: OptionInputs, sites: Mapping[str, Site]
) -> OptionCost | None:
    if profile is None:
        return None
    return option_cost(facts, profile, sites[inputs.site], sites, inputs.regions, inputs.now)


def held_for_stock(rules: Sequence[RuleResult]) -> tuple[float, float]:
    """The orders the target_stock rule counted as held for lack of critical stock over its
    horizon, and that horizon in hours (0, 0 when it did not check)."""
    rule = next((r for r in rules if r.name == TARGET_STOCK), None)
    if rule is None:
        return 0.0, 0.0
    return float(rule.numbers.get("orders_held_over_horizon", 0.0)), float(
        rule.numbers.get("coverage_hours", 0.0)
    )


def _stock_held_per_hour(rules: Sequence[RuleResult]) -> float:
    held, hours = held_for_stock(rules)
    return held / hours if hours > 0 and math.isfinite(held) else 0.0


def _option_json(
    facts: OptionFacts,
    targets: tuple[str, ...] | None,
    rules: Sequence[RuleResult],
    per_target: Mapping[str, int],
    cost: OptionCost | None,
    requested: bool,
) -> dict[str, object]:
    first = refusal(rules)
    out: dict[str, object] = {
        "name": facts.name,
        "targets": list(targets) if targets is not None else None,
        "serving_targets": list(facts.targets),
        "requested": requested,
        "passes_rules": first is None,
        "failing_rule": first.name if first else None,
        "warnings": [r.name for r in rules if r.warning],
        "orders_to_move": 0 if facts.name == HOLD else facts.in_flight,
        "per_target": dict(per_target),
        "late": facts.in_flight_late,
        "held": facts.in_flight_held,
        "notices": facts.notices,
    }
    return out | cost.to_json_dict() if cost is not None else out

"""Choose the DC for an order: filter feasible sites, rank them, say why the others were excluded.

A site is feasible when it is accepting, not down, not impaired, its breaker is not open, it is
under its hourly capacity and it holds stock for every line. Feasible sites that keep the promise
rank before those that would be late; among each group a weighted score of ETA, cost and load
decides (lower is better).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from control_plane.domain import BreakerState, Health, OrderRequest, SiteState
from failover.eta import EtaModel
from failover.ramp import admit_under_ramp


@dataclass(frozen=True, slots=True)
class RankingWeights:
    eta_hours: float = 1.0  # one hour of ETA ...
    cost_per_1000: float = 1.0  # ... weighs as much as 1,000 (currency units) of handling cost
    load_ratio: float = 4.0  # a full site costs four hours' worth of score


@dataclass(frozen=True, slots=True)
class Candidate:
    site: str
    eta: datetime
    late: bool
    score: float


@dataclass(frozen=True, slots=True)
class Exclusion:
    site: str
    # not_accepting | down | impaired | breaker_open | over_capacity | ramping | no_stock:SKU | avoid
    reason: str


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    candidates: tuple[Candidate, ...]
    exclusions: tuple[Exclusion, ...]

    @property
    def chosen(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    def summary(self) -> str:
        """One line for the attempt log: why each excluded site was passed over."""
        return ", ".join(f"{e.site}={e.reason}" for e in self.exclusions) or "none excluded"


def order_draw(order: OrderRequest) -> float:
    """A stable number in [0, 1) per order: a ramping site takes the same orders on every retry."""
    digest = hashlib.blake2b(f"{order.channel}/{order.external_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest) / 2**64


def exclusion_reason(
    state: SiteState,
    order: OrderRequest,
    stock: Mapping[tuple[str, str], int],
    avoid: Collection[str] = (),
) -> str | None:
    """Why `state`'s site cannot take `order` now, or None when it can."""
    code = state.site.code
    if code in avoid:
        return "avoid"
    if not state.accepting:
        return "not_accepting"
    if state.health is Health.DOWN:
        return "down"
    if state.impaired:
        return "impaired"
    if state.breaker is BreakerState.OPEN:
        return "breaker_open"
    if state.routed_this_hour >= state.site.capacity_per_hour:
        return "over_capacity"
    if state.ramp_weight < 1.0 and not admit_under_ramp(state.ramp_weight, order_draw(order)):
        return "ramping"
    for line in order.lines:
        if stock.get((code, line.sku), 0) < line.qty:
            return f"no_stock:{line.sku}"
    return None


def rank_candidates(
    order: OrderRequest,
    sites: Sequence[SiteState],
    stock: Mapping[tuple[str, str], int],
    now: datetime,
    model: EtaModel,
    weights: RankingWeights = RankingWeights(),
    avoid: Collection[str] = (),
) -> RoutingDecision:
    """Rank every feasible site for `order` (best first) and list the excluded ones with reasons.

    `stock` maps (site, sku) to units available; `avoid` names sites this order must not go to now
    (e.g. one where a cancel of an earlier copy is still pending).
    """
    candidates: list[Candidate] = []
    exclusions: list[Exclusion] = []
    dest = order.ship_to.point
    for state in sites:
        reason = exclusion_reason(state, order, stock, avoid)
        if reason is not None:
            exclusions.append(Exclusion(state.site.code, reason))
            continue
        eta = model.eta(state.site, dest, now)
        eta_hours = (eta - now).total_seconds() / 3600
        score = (
            weights.eta_hours * eta_hours
            + weights.cost_per_1000 * float(state.site.cost_per_order) / 1000
            + weights.load_ratio * min(state.load_ratio, 1.0)
        )
        candidates.append(Candidate(state.site.code, eta, eta > order.promised_by, score))
    candidates.sort(key=lambda c: (c.late, c.score, c.site))
    return RoutingDecision(tuple(candidates), tuple(exclusions))

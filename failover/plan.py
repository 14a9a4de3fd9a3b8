"""Plan a site failover: where each in-flight order would go, when it would arrive, what it costs.

The dry run answers with this plan and the real failover executes it, so both go through the same
ranking as intake (`failover.routing.rank_candidates`, the failed site in `avoid`) and walk the
orders in the same order (`plan_order`). Each assignment consumes the target's stock and one order
of its hourly capacity before the next order is ranked, as the real move's reservations and
`note_routed` do; without that the plan would send every order to the one best site.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from control_plane.domain import Customer, OrderLine, OrderRequest, OrderStatus, ShipTo, SiteState
from failover.eta import EtaModel
from failover.routing import Candidate, RankingWeights, rank_candidates
from failover.safety import resolve_targets, spare_capacity

# routed (sent, not yet acknowledged) and accepted orders are still at the DC: those move;
# shipped ones have left, held ones are at no site
IN_FLIGHT = frozenset({OrderStatus.ROUTED, OrderStatus.ACCEPTED})


@dataclass(frozen=True, slots=True)
class InFlightOrder:
    """An order at a site, as a failover needs it: where it is, what it holds, what was promised."""

    order_id: str
    site: str
    ship_to: ShipTo
    lines: tuple[OrderLine, ...]
    promised_by: datetime
    status: OrderStatus
    avoid: frozenset[str] = frozenset()  # sites with a cancel of this order still pending

    @classmethod
    def from_request(
        cls,
        order_id: str,
        site: str,
        status: OrderStatus,
        req: OrderRequest,
        avoid: Collection[str] = (),
    ) -> InFlightOrder:
        return cls(order_id, site, req.ship_to, req.lines, req.promised_by, status, frozenset(avoid))

    def as_request(self, now: datetime) -> OrderRequest:
        """The order as routing reads it; routing looks only at lines, ship_to and promised_by."""
        return OrderRequest(
            channel="failover",
            external_id=self.order_id,
            customer=Customer("", ""),
            ship_to=self.ship_to,
            lines=self.lines,
            placed_at=now,
            promised_by=self.promised_by,
        )


@dataclass(frozen=True, slots=True)
class Assignment:
    order_id: str
    from_site: str
    to_site: str | None  # None: no site can take it now; the move holds it (kept, retried)
    eta: datetime | None
    late: bool
    reason: str
    promised_by: datetime
    # the next-best sites in rank order: where the real move's dispatch goes when `to_site` fails
    fallbacks: tuple[Candidate, ...] = ()

    def to_json_dict(self) -> dict[str, object]:
        return {
            "order_id": self.order_id,
            "from_site": self.from_site,
            "to_site": self.to_site,
            "eta": self.eta.isoformat() if self.eta else None,
            "promised_by": self.promised_by.isoformat(),
            "late": self.late,
            "reason": self.reason,
            "fallbacks": [c.site for c in self.fallbacks],
        }


@dataclass(frozen=True, slots=True)
class DelayNotice:
    """A delay notice the move would cause: one per order whose new ETA misses its promise."""

    order_id: str
    site: str
    eta: datetime
    promised_by: datetime

    def to_json_dict(self) -> dict[str, object]:
        return {
            "order_id": self.order_id,
            "site": self.site,
            "eta": self.eta.isoformat(),
            "promised_by": self.promised_by.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class CapacityCheck:
    site: str
    spare_before: int  # orders the site could still take this hour; 0 when it serves none
    assigned: int
    spare_after: int

    def to_json_dict(self) -> dict[str, object]:
        return {
            "site": self.site,
            "spare_before": self.spare_before,
            "assigned": self.assigned,
            "spare_after": self.spare_after,
        }


@dataclass(frozen=True, slots=True)
class FailoverPlan:
    failed_site: str
    targets: tuple[str, ...] | None  # None: any other site
    planned_at: datetime
    assignments: tuple[Assignment, ...]  # in the order the move must process them
    capacity: tuple[CapacityCheck, ...]

    @property
    def per_target(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for a in self.assignments:
            if a.to_site is not None:
                counts[a.to_site] = counts.get(a.to_site, 0) + 1
        return dict(sorted(counts.items()))

    @property
    def late(self) -> int:
        return sum(1 for a in self.assignments if a.late)

    @property
    def unplaceable(self) -> tuple[str, ...]:
        return tuple(a.order_id for a in self.assignments if a.to_site is None)

    @property
    def notices(self) -> tuple[DelayNotice, ...]:
        # held orders get none here: with no ETA there is nothing to tell yet, and the notice goes
        # out when a retry places them late
        return tuple(
            DelayNotice(a.order_id, a.to_site, a.eta, a.promised_by)
            for a in self.assignments
            if a.late and a.to_site is not None and a.eta is not None
        )

    def to_json_dict(self) -> dict[str, object]:
        """The dry-run answer: orders to move per target, delays, notices, capacity per target."""
        return {
            "site": self.failed_site,
            "targets": list(self.targets) if self.targets is not None else None,
            "planned_at": self.planned_at.isoformat(),
            "orders_to_move": len(self.assignments),
            "per_target": self.per_target,
            "late": self.late,
            "unplaceable": list(self.unplaceable),
            "notices": [n.to_json_dict() for n in self.notices],
            "capacity": [c.to_json_dict() for c in self.capacity],
            "assignments": [a.to_json_dict() for a in self.assignments],
        }


def plan_order(orders: Sequence[InFlightOrder]) -> list[InFlightOrder]:
    """The order a failover moves orders in: tightest promise first, so it gets first pick."""
    return sorted(orders, key=lambda o: (o.promised_by, o.order_id))


def plan_failover(
    failed_site: str,
    orders: Sequence[InFlightOrder],
    sites: Sequence[SiteState],
    stock: Mapping[tuple[str, str], int],
    targets: Collection[str] | None,
    eta_model: EtaModel,
    now: datetime,
    weights: RankingWeights = RankingWeights(),
) -> FailoverPlan:
    """Assign every in-flight order of `failed_site` to a target (or none), consuming as it goes.

    Orders not in flight at `failed_site` are not part of a failover and are left out. Raises
    InvalidInput for bad `targets` (see `resolve_targets`).
    """
    candidates = {s.site.code: s for s in resolve_targets(failed_site, sites, targets)}
    live: dict[str, SiteState] = dict(candidates)
    left: dict[tuple[str, str], int] = dict(stock)
    moving = [o for o in orders if o.site == failed_site and o.status in IN_FLIGHT]
    assignments: list[Assignment] = []
    for o in plan_order(moving):
        decision = rank_candidates(
            o.as_request(now),
            list(live.values()),
            left,
            now,
            eta_model,
            weights,
            avoid={failed_site, *o.avoid},
        )
        chosen = decision.chosen
        if chosen is None:
            reason = f"no site can take it: {decision.summary()}"
            assignments.append(Assignment(o.order_id, failed_site, None, None, False, reason, o.promised_by))
            continue
        for line in o.lines:
            left[(chosen.site, line.sku)] = left.get((chosen.site, line.sku), 0) - line.qty
        taken = live[chosen.site]
        live[chosen.site] = replace(taken, routed_this_hour=taken.routed_this_hour + 1)
        reason = f"best of {len(decision.candidates)} feasible"
        if decision.exclusions:
            reason += f"; passed over: {decision.summary()}"
        assignments.append(
            Assignment(
                o.order_id,
                failed_site,
                chosen.site,
                chosen.eta,
                chosen.late,
                reason,
                o.promised_by,
                decision.candidates[1:],
            )
        )
    assigned = {code: 0 for code in candidates}
    for a in assignments:
        if a.to_site is not None:
            assigned[a.to_site] += 1
    capacity = tuple(
        CapacityCheck(code, spare_capacity(s), assigned[code], spare_capacity(s) - assigned[code])
        for code, s in candidates.items()
    )
    return FailoverPlan(
        failed_site,
        tuple(sorted(set(targets))) if targets is not None else None,
        now,
        tuple(assignments),
        capacity,
    )

"""Loss of an outage by duration, with and without failover; RTO, RPO and tier recommendations.

The model, per order caught in an outage of D hours that starts at hour s of the week:

* Without failover the order waits until the subject is back. Orders placed in the last
  `promise_slack_hours` of the outage still ship on time; the earlier ones are late. A late order
  costs `late_order_cost`, is cancelled with `cancel_probability` (its margin is lost), and its
  customer churns with `churn_probability` (losing the customer lifetime value).
* With failover the absorbable share (by hour of the week) ships from a backup at once and costs
  the extra fulfilment cost; it is late only when the backup's extra transit exceeds the slack.
  The rest waits as above. The operator fails over only when that costs less than waiting, so
  failover never raises the loss.

"Expected" figures average over every start hour of the week, weighted by how often that hour
occurs in the observed period; "worst start" is the most expensive start hour. Rates are the
hour-of-week means, so the loss grows with D by construction (every per-hour cost is >= 0).
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

from bia.frame import HOURS_PER_WEEK
from bia.params import BiaParams
from bia.results import LossPoint


@dataclass(frozen=True, slots=True)
class LossInputs:
    """Per-hour-of-week demand of one subject and what failover can do for it (168 entries each)."""

    orders: tuple[float, ...]
    revenue: tuple[float, ...]
    customers: tuple[float, ...]
    absorbed_share: tuple[float, ...]  # share of the hour's orders a backup or fallback takes
    reroute_cost: tuple[float, ...]  # extra cost per absorbed order, >= 0
    late_share: tuple[float, ...]  # share of the absorbed orders that still arrive late
    weights: tuple[int, ...]  # occurrences of each hour of the week in the period


class _Window:
    """Sums of a periodic hourly series over [s, s + length) for every start hour s of the week."""

    def __init__(self, hourly: list[float], max_hours: float) -> None:
        self.hourly = hourly
        span = HOURS_PER_WEEK + math.ceil(max_hours) + 1
        self.prefix = [0.0] * (span + 1)
        for i in range(span):
            self.prefix[i + 1] = self.prefix[i] + hourly[i % HOURS_PER_WEEK]

    def sums(self, length: float) -> list[float]:
        if length <= 0:
            return [0.0] * HOURS_PER_WEEK
        whole = int(length)
        frac = length - whole
        prefix, hourly = self.prefix, self.hourly
        # Starts are whole hours, so the end's fractional part is `frac` for every start.
        return [
            prefix[s + whole] + frac * hourly[(s + whole) % HOURS_PER_WEEK] - prefix[s]
            for s in range(HOURS_PER_WEEK)
        ]


def loss_curve(inputs: LossInputs, params: BiaParams) -> tuple[LossPoint, ...]:
    """Loss without and with failover at every duration of `params.loss_durations_hours`."""
    h = range(HOURS_PER_WEEK)
    o, v, c = inputs.orders, inputs.revenue, inputs.customers
    a, k, lam = inputs.absorbed_share, inputs.reroute_cost, inputs.late_share
    longest = max(params.loss_durations_hours)
    series = {
        "o": [o[i] for i in h],
        "v": [v[i] for i in h],
        "c": [c[i] for i in h],
        "o_held": [(1 - a[i]) * o[i] for i in h],
        "v_held": [(1 - a[i]) * v[i] for i in h],
        "c_held": [(1 - a[i]) * c[i] for i in h],
        "o_late_moved": [a[i] * lam[i] * o[i] for i in h],
        "v_late_moved": [a[i] * lam[i] * v[i] for i in h],
        "c_late_moved": [a[i] * lam[i] * c[i] for i in h],
        "reroute": [a[i] * o[i] * k[i] for i in h],
    }
    win = {name: _Window(values, longest) for name, values in series.items()}
    weights = list(inputs.weights) if sum(inputs.weights) > 0 else [1] * HOURS_PER_WEEK
    cost = _Costs(
        params.late_order_cost,
        params.gross_margin * params.cancel_probability,
        params.churn_probability * params.customer_lifetime_value,
    )
    points: list[LossPoint] = []
    for duration in params.loss_durations_hours:
        late_len = max(0.0, duration - params.promise_slack_hours)

        def over(name: str, length: float) -> list[float]:
            return win[name].sums(length)

        affected = over("o", duration)
        wait = cost.components(
            affected, over("v", duration), over("o", late_len), over("v", late_len), over("c", late_len), None
        )
        fail = cost.components(
            affected,
            over("v_held", duration),
            _add(over("o_held", late_len), over("o_late_moved", duration)),
            _add(over("v_held", late_len), over("v_late_moved", duration)),
            _add(over("c_held", late_len), over("c_late_moved", duration)),
            over("reroute", duration),
        )
        # Per start hour, the operator fails over only if that costs less than waiting.
        best = [
            [f[s] if fail[-1][s] < wait[-1][s] else w[s] for s in h] for w, f in zip(wait, fail, strict=True)
        ]
        points.append(_point(duration, False, wait, weights))
        points.append(_point(duration, True, best, weights))
    return tuple(points)


def _add(x: list[float], y: list[float]) -> list[float]:
    return [p + q for p, q in zip(x, y, strict=True)]


@dataclass(frozen=True, slots=True)
class _Costs:
    late_order_cost: float
    margin_rate: float  # gross margin x cancel probability: margin lost per unit of late revenue
    churn_value: float  # churn probability x customer lifetime value: per late customer

    def components(
        self,
        affected: list[float],
        at_risk: list[float],
        late_orders: list[float],
        late_revenue: list[float],
        late_customers: list[float],
        reroute: list[float] | None,
    ) -> list[list[float]]:
        """Per start hour: affected, at risk, late orders, lost margin, late cost, churn, reroute, total."""
        margin = [self.margin_rate * x for x in late_revenue]
        late = [self.late_order_cost * x for x in late_orders]
        churn = [self.churn_value * x for x in late_customers]
        moved = reroute if reroute is not None else [0.0] * HOURS_PER_WEEK
        total = [m + lc + ch + r for m, lc, ch, r in zip(margin, late, churn, moved, strict=True)]
        return [affected, at_risk, late_orders, margin, late, churn, moved, total]


def _point(duration: float, failover: bool, components: list[list[float]], weights: list[int]) -> LossPoint:
    total_weight = sum(weights)
    expected = [sum(map(operator.mul, weights, values)) / total_weight for values in components]
    totals = components[-1]
    worst = max(range(HOURS_PER_WEEK), key=lambda s: (totals[s], -s))
    return LossPoint(
        duration_hours=duration,
        failover=failover,
        orders_affected=expected[0],
        revenue_at_risk=expected[1],
        late_orders=expected[2],
        lost_margin=expected[3],
        late_cost=expected[4],
        churn_cost=expected[5],
        reroute_cost=expected[6],
        total=expected[7],
        worst_start_total=totals[worst],
        worst_start_hour_of_week=worst,
    )


def recommend_rto(losses: tuple[LossPoint, ...], params: BiaParams) -> float:
    """The longest candidate outage whose worst-start loss without failover stays within tolerance.

    Without failover, because the RTO is the time by which the order flow must be back — by repair
    or by failing over; the drill then checks failover finishes inside it.
    """
    by_duration = {p.duration_hours: p.worst_start_total for p in losses if not p.failover}
    tolerable = [d for d in params.rto_candidates_hours if by_duration[d] <= params.loss_tolerance]
    return max(tolerable) if tolerable else min(params.rto_candidates_hours)


def tier_for(rto_hours: float, params: BiaParams) -> int:
    """Tier 1 must be back within tier1_max_rto_hours, tier 2 within tier2_max_rto_hours, else tier 3."""
    if rto_hours <= params.tier1_max_rto_hours:
        return 1
    if rto_hours <= params.tier2_max_rto_hours:
        return 2
    return 3


def recommend_rpo(peak_orders_per_hour: float, params: BiaParams) -> int:
    """The longest candidate window of order data whose loss at the peak hour's rate stays tolerable."""
    tolerable = [
        s
        for s in params.rpo_candidates_seconds
        if peak_orders_per_hour * s / 3600 <= params.rpo_max_orders_lost
    ]
    return max(tolerable) if tolerable else min(params.rpo_candidates_seconds)

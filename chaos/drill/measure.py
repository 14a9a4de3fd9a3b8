"""What a drill measured, from what it saw (pure): time to detect, mitigate and recover, intake
per second, and latency percentiles before, during and after the fault.

- detect: fault -> the subject's breaker leaves `closed`, its health turns `down`/`degraded`, or
  it is marked impaired by an integration it needs.
- mitigate: fault -> the first order taken away from the subject by another DC: one whose route
  attempts could not use the subject (failed, refused, breaker open), or, once the fault is
  detected or the subject taken out of routing, any order of the subject's region (routing no
  longer offers it the subject). An order of the region that another DC took before detection is
  no evidence: the sample world's Seoul micro-fulfillment site takes a third of the capital
  region's orders on a quiet day.
- recover: fault -> the first moment from which, for `hold_s` and at least 20 orders, the share
  of posted orders that a DC accepted is back to 95 % of the share before the fault (held orders
  do not count).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from chaos.drill.context import Outcome

RECOVERED_SHARE = 0.95
RECOVERY_MIN_ORDERS = 20


@dataclass(frozen=True, slots=True)
class SiteSample:
    t: float
    site: str
    health: str
    breaker: str
    accepting: bool
    impaired: bool = False  # an integration it needs is down (it cannot ship)

    @classmethod
    def of(cls, t: float, site: dict[str, Any]) -> SiteSample:
        """From one site of GET /v1/sites."""
        impaired = bool(site.get("impaired", False))
        return cls(t, site["code"], site["health"], site["breaker"], site["accepting"], impaired)


@dataclass(frozen=True, slots=True)
class Second:
    t: int  # epoch second
    posted: int
    accepted: int  # by a DC, answered within this second
    held: int
    failed: int  # not placed at all (errors)
    p99_ms: float | None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return round(ordered[rank - 1], 1)


def accepted(o: Outcome) -> bool:
    return o.placed and o.code in (200, 201) and o.status not in ("held", "received")


def per_second(outcomes: Iterable[Outcome]) -> list[Second]:
    buckets: dict[int, list[Outcome]] = {}
    for o in outcomes:
        buckets.setdefault(int(o.done_at), []).append(o)
    if not buckets:
        return []
    out = []
    for t in range(min(buckets), max(buckets) + 1):
        group = buckets.get(t, [])
        out.append(Second(
            t, len(group), sum(accepted(o) for o in group), sum(o.placed and not accepted(o) for o in group),
            sum(not o.placed for o in group), percentile([o.latency_ms for o in group], 99),
        ))  # fmt: skip
    return out


def time_to_detect(samples: Iterable[SiteSample], subject: str, fault_at: float) -> float | None:
    for s in sorted(samples, key=lambda s: s.t):
        noticed = s.breaker != "closed" or s.health in ("down", "degraded") or s.impaired
        if s.site == subject and s.t >= fault_at and noticed:
            return round(s.t - fault_at, 3)
    return None


def routed_away_at(samples: Iterable[SiteSample], subject: str, fault_at: float) -> float | None:
    """When routing stopped offering the subject orders after the fault: it was seen broken, or
    taken out of routing (an operator's failover)."""
    detect = time_to_detect(samples, subject, fault_at)
    closed = [s.t for s in samples if s.site == subject and s.t >= fault_at and not s.accepting]
    candidates = [t for t in (None if detect is None else fault_at + detect, min(closed, default=None)) if t]
    return min(candidates, default=None)


def time_to_mitigate(
    outcomes: Iterable[Outcome], subject: str, region: str, fault_at: float, detected_at: float | None
) -> float | None:
    """`detected_at`: from `routed_away_at`."""

    def taken_away(o: Outcome) -> bool:
        if subject in o.passed_over:
            return True
        return detected_at is not None and o.t >= detected_at and o.region == region

    firsts = [
        o.done_at for o in outcomes
        if o.t >= fault_at and accepted(o) and o.site not in (None, subject) and taken_away(o)
    ]  # fmt: skip
    return round(min(firsts) - fault_at, 3) if firsts else None


def accepted_share(outcomes: Iterable[Outcome], start: float, end: float) -> float | None:
    group = [o for o in outcomes if start <= o.t < end]
    return sum(accepted(o) for o in group) / len(group) if group else None


def time_to_recover(
    outcomes: Sequence[Outcome],
    fault_at: float,
    not_before: float,
    steady_share: float,
    hold_s: float = 3.0,
    min_orders: int = RECOVERY_MIN_ORDERS,
) -> float | None:
    """Seconds from the fault until the accepted share holds >= 95 % of steady for `hold_s` and
    over at least `min_orders` orders (at a quiet rate a short window is a coin toss)."""
    if steady_share <= 0 or not outcomes:
        return None
    # sorted once: each candidate window is then a slice, not another pass over every order
    ordered = sorted(outcomes, key=lambda o: o.t)
    starts = [o.t for o in ordered]
    last = starts[-1]
    t = max(fault_at, not_before)
    while t + hold_s <= last:
        first = bisect.bisect_left(starts, t)
        if first + min_orders > len(starts):
            return None
        end = max(bisect.bisect_left(starts, t + hold_s), first + min_orders)
        window = ordered[first:end]
        if sum(accepted(o) for o in window) >= RECOVERED_SHARE * steady_share * len(window):
            return round(t - fault_at, 3)
        t += 0.5
    return None


def latency(outcomes: Iterable[Outcome], start: float, end: float) -> dict[str, float | None]:
    values = [o.latency_ms for o in outcomes if start <= o.t < end]
    return {"orders": len(values), "p50_ms": percentile(values, 50), "p99_ms": percentile(values, 99)}


def changes(samples: Iterable[SiteSample]) -> list[dict[str, Any]]:
    """One site's samples reduced to the moments its state changed, and the last one: a band a
    chart can draw, and a journal that stays small over a long drill."""
    kept: list[dict[str, Any]] = []
    last: SiteSample | None = None
    for s in samples:
        state = (s.health, s.breaker, s.accepting, s.impaired)
        if last is None or state != (last.health, last.breaker, last.accepting, last.impaired):
            kept.append(_state(s))
        last = s
    if last is not None and kept and kept[-1]["t"] != round(last.t, 2):
        kept.append(_state(last))
    return kept


def _state(s: SiteSample) -> dict[str, Any]:
    return {"t": round(s.t, 2), "health": s.health, "breaker": s.breaker, "accepting": s.accepting,
            "impaired": s.impaired}  # fmt: skip

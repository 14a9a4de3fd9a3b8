"""Who serves a failed site's regions: backups by ETA, limited by their spare capacity and stock.

For every hour of the week, each region of the failed site (largest first) sends its stock-eligible
orders to its preferred backup (fastest ETA, ties by the configured order) up to that backup's
spare capacity (capacity minus its own mean load at that hour), then to the next backup. What no
backup can take waits for the site. The loops run over hours x regions x backups (a few thousand
steps per site), never over orders.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from bia.frame import HOURS_PER_WEEK, Period
from bia.geo import backup_preference, eta_hours, fulfilment_cost
from bia.params import BiaParams
from bia.results import FailoverCapacity, FailoverRoute
from control_plane.domain import Region, Site


@dataclass(frozen=True, slots=True)
class RegionDemand:
    """One failed site's orders per hour for one region, by hour of the week."""

    region: str
    orders: tuple[float, ...]  # all of the site's orders from that region
    eligible: tuple[float, ...]  # the part whose SKUs the backups hold (stock-weighted)


@dataclass(frozen=True, slots=True)
class FailoverPlan:
    site: str
    absorbed: tuple[float, ...]  # orders per hour the backups take, by hour of the week
    reroute_cost: tuple[float, ...]  # mean extra cost per absorbed order (clamped at 0), by hour
    late_share: tuple[float, ...]  # share of absorbed orders late because of extra transit, by hour
    absorbed_by_backup: dict[str, float]  # mean orders per hour over the period
    routes: tuple[FailoverRoute, ...]
    capacity: tuple[FailoverCapacity, ...]
    extra_transit_hours: float  # mean over absorbed orders
    extra_cost_per_order: float


def plan_failover(
    site: Site,
    regions: list[RegionDemand],
    own_load: dict[str, tuple[float, ...]],
    sites: dict[str, Site],
    region_by_code: dict[str, Region],
    period: Period,
    params: BiaParams,
) -> FailoverPlan:
    """Allocate the failed site's orders to its backups hour by hour of the week."""
    hours = range(HOURS_PER_WEEK)
    backups = [sites[b] for b in site.backups]
    spare = {b.code: [max(0.0, b.capacity_per_hour - own_load[b.code][h]) for h in hours] for b in backups}
    spare_before = {code: list(values) for code, values in spare.items()}
    offered = {b.code: [0.0] * HOURS_PER_WEEK for b in backups}
    taken = {(r.region, b.code): [0.0] * HOURS_PER_WEEK for r in regions for b in backups}
    ordered = sorted(regions, key=lambda r: (-sum(r.orders), r.region))
    prefs = {r.region: backup_preference(site, region_by_code[r.region], sites, params) for r in ordered}
    for h in hours:
        hour_taken, hour_offered = allocate_hour(
            [(r.region, r.eligible[h]) for r in ordered], prefs, {b: values[h] for b, values in spare.items()}
        )
        for key, take in hour_taken.items():
            taken[key][h] += take
        for b, amount in hour_offered.items():
            offered[b][h] += amount
    extra = {
        (r.region, b.code): (
            eta_hours(b, region_by_code[r.region], params)
            - eta_hours(site, region_by_code[r.region], params),
            fulfilment_cost(b, region_by_code[r.region], params)
            - fulfilment_cost(site, region_by_code[r.region], params),
        )
        for r in regions
        for b in backups
    }
    absorbed = [sum(taken[key][h] for key in taken) for h in hours]
    cost = [_ratio(sum(taken[key][h] * max(0.0, extra[key][1]) for key in taken), absorbed[h]) for h in hours]
    late = [
        _ratio(sum(taken[key][h] for key in taken if extra[key][0] > params.promise_slack_hours), absorbed[h])
        for h in hours
    ]
    mean = {key: _period_mean(values, period) for key, values in taken.items()}
    total_absorbed = sum(mean.values())
    routes = _routes(site, regions, backups, mean, extra, period, params)
    return FailoverPlan(
        site=site.code,
        absorbed=tuple(absorbed),
        reroute_cost=tuple(cost),
        late_share=tuple(late),
        absorbed_by_backup={b.code: sum(mean[(r.region, b.code)] for r in regions) for b in backups},
        routes=routes,
        capacity=_capacity(site, backups, own_load, offered, spare_before),
        extra_transit_hours=_ratio(sum(mean[key] * extra[key][0] for key in mean), total_absorbed),
        extra_cost_per_order=_ratio(sum(mean[key] * extra[key][1] for key in mean), total_absorbed),
    )


def allocate_hour(
    demand: list[tuple[str, float]], prefs: Mapping[str, Sequence[str]], spare: Mapping[str, float]
) -> tuple[dict[tuple[str, str], float], dict[str, float]]:
    """One hour's orders per region, in the given region order, each to its preferred backups up to
    their spare capacity; returns what each (region, backup) takes and what each backup was offered."""
    left = dict(spare)
    taken: dict[tuple[str, str], float] = {}
    offered: dict[str, float] = {}
    for region, orders in demand:
        remaining = orders
        for b in prefs[region]:
            if remaining <= 0:
                break
            offered[b] = offered.get(b, 0.0) + remaining
            take = min(remaining, left.get(b, 0.0))
            left[b] = left.get(b, 0.0) - take
            remaining -= take
            taken[(region, b)] = taken.get((region, b), 0.0) + take
    return taken, offered


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else 0.0


def _period_mean(by_hour_of_week: list[float] | tuple[float, ...], period: Period) -> float:
    """Mean per hour over the period of an hour-of-week series."""
    return sum(x * n for x, n in zip(by_hour_of_week, period.occurrences, strict=True)) / period.hours


def _routes(
    site: Site,
    regions: list[RegionDemand],
    backups: list[Site],
    mean: dict[tuple[str, str], float],
    extra: dict[tuple[str, str], tuple[float, float]],
    period: Period,
    params: BiaParams,
) -> tuple[FailoverRoute, ...]:
    out: list[FailoverRoute] = []
    for r in sorted(regions, key=lambda r: r.region):
        demand = _period_mean(r.orders, period)
        if demand <= 0:
            continue
        for b in backups:
            served = mean[(r.region, b.code)]
            if served > 0:
                transit, cost = extra[(r.region, b.code)]
                out.append(
                    FailoverRoute(
                        site.code,
                        r.region,
                        b.code,
                        served,
                        served / demand,
                        transit,
                        cost,
                        transit > params.promise_slack_hours,
                    )
                )
        waiting = demand - sum(mean[(r.region, b.code)] for b in backups)
        if waiting > 1e-9:
            out.append(FailoverRoute(site.code, r.region, None, waiting, waiting / demand, None, None, False))
    return tuple(out)


def _capacity(
    site: Site,
    backups: list[Site],
    own_load: dict[str, tuple[float, ...]],
    offered: dict[str, list[float]],
    spare: dict[str, list[float]],
) -> tuple[FailoverCapacity, ...]:
    rows: list[FailoverCapacity] = []
    for b in backups:
        load = [own_load[b.code][h] + offered[b.code][h] for h in range(HOURS_PER_WEEK)]
        worst = max(range(HOURS_PER_WEEK), key=lambda h: (load[h], -h))
        saturated = sum(1 for h in range(HOURS_PER_WEEK) if offered[b.code][h] > spare[b.code][h] + 1e-9)
        rows.append(
            FailoverCapacity(
                site=site.code,
                backup=b.code,
                capacity_per_hour=b.capacity_per_hour,
                own_peak_orders_per_hour=max(own_load[b.code]),
                offered_peak_orders_per_hour=load[worst],
                peak_utilisation=load[worst] / b.capacity_per_hour,
                worst_hour_of_week=worst,
                saturated_hours_per_week=saturated,
                runs_out_first=False,
            )
        )
    if rows:
        first = max(rows, key=lambda r: (r.peak_utilisation, r.saturated_hours_per_week))
        if first.peak_utilisation >= 1.0:
            rows = [replace(r, runs_out_first=True) if r is first else r for r in rows]
    return tuple(rows)

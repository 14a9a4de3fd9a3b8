"""Distances, ETAs and which site normally serves which region, over the world's geography."""

from __future__ import annotations

import math

from bia.params import BiaParams
from control_plane.domain import GeoPoint, Region, Site, World

EARTH_RADIUS_KM = 6371.0088


def haversine_km(a: GeoPoint, b: GeoPoint) -> float:
    """Great-circle distance between two points in kilometres."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a.lat, a.lon, b.lat, b.lon))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def eta_hours(site: Site, region: Region, params: BiaParams) -> float:
    """Hours from order to delivery at the region's centroid: handling + base + km / speed."""
    km = haversine_km(site.location, region.centroid)
    return site.handling_hours + params.transit_base_hours + km / params.transit_speed_kmh


def fulfilment_cost(site: Site, region: Region, params: BiaParams) -> float:
    """Cost of one order shipped from `site` to `region`: the site's handling plus line-haul by km."""
    return float(site.cost_per_order) + params.transit_cost_per_km * haversine_km(
        site.location, region.centroid
    )


def home_sites(world: World) -> dict[str, list[tuple[str, float]]]:
    """Map each region to the sites that normally serve it, with weights summing to 1.

    A region with sites of its own splits its demand between them by capacity (Icheon and the
    Seoul micro-fulfillment site share the capital); a region without one is served by the
    nearest site (Jeju by Gwangju, Gangwon by Icheon).
    """
    out: dict[str, list[tuple[str, float]]] = {}
    for region in world.regions:
        local = [s for s in world.sites if s.region == region.code]
        if local:
            total = sum(s.capacity_per_hour for s in local)
            out[region.code] = [(s.code, s.capacity_per_hour / total) for s in local]
        else:
            nearest = min(world.sites, key=lambda s: haversine_km(s.location, region.centroid))
            out[region.code] = [(nearest.code, 1.0)]
    return out


def backup_preference(site: Site, region: Region, sites: dict[str, Site], params: BiaParams) -> list[str]:
    """Order the site's configured backups for one region: fastest ETA first, then the configured order."""
    ranked = sorted(
        enumerate(site.backups),
        key=lambda pair: (round(eta_hours(sites[pair[1]], region, params), 6), pair[0]),
    )
    return [code for _, code in ranked]

"""The ETA model (DESIGN §3): handling time at the site plus transit by haversine distance."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from control_plane.domain import GeoPoint, Site

EARTH_RADIUS_KM = 6371.0088


def haversine_km(a: GeoPoint, b: GeoPoint) -> float:
    """Great-circle distance between two points in kilometres."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a.lat, a.lon, b.lat, b.lon))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True, slots=True)
class EtaModel:
    """`eta = dispatch_time + handling_hours + base_hours + km / km_per_hour`."""

    base_hours: float = 6.0
    km_per_hour: float = 60.0

    def transit_hours(self, site: Site, dest: GeoPoint) -> float:
        return self.base_hours + haversine_km(site.location, dest) / self.km_per_hour

    def eta(self, site: Site, dest: GeoPoint, dispatch_time: datetime) -> datetime:
        return dispatch_time + timedelta(hours=site.handling_hours + self.transit_hours(site, dest))


def is_late(promised_by: datetime, eta: datetime | None, now: datetime, slack: timedelta) -> bool:
    """Whether an order's promise has slipped: its ETA is past the promise, or, with no ETA (held),
    the promise is closer than `slack` (or past), too close to count on a DC taking it in time."""
    if eta is not None:
        return eta > promised_by
    return promised_by - now < slack

"""Factories for domain objects, so tests say only what matters to them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from control_plane.domain import (
    BreakerState,
    Customer,
    GeoPoint,
    Health,
    OrderLine,
    OrderRequest,
    ShipTo,
    Site,
    SiteState,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class Clock:
    """A clock a test moves by hand (`clock.now += ...`); starts at `start`, or the real now."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


SEOUL = GeoPoint(37.55, 126.98)


def site(code: str = "icheon", lat: float = 37.27, lon: float = 127.44, **kw: object) -> Site:
    defaults: dict[str, object] = {
        "name": code.title(),
        "region": "capital",
        "location": GeoPoint(lat, lon),
        "capacity_per_hour": 1000,
        "cost_per_order": Decimal(3000),
        "handling_hours": 3.0,
        "wms_url": f"http://127.0.0.1:1/{code}",
    }
    defaults.update(kw)
    return Site(code=code, **defaults)  # type: ignore[arg-type]


def state(s: Site | None = None, **kw: object) -> SiteState:
    defaults: dict[str, object] = {
        "accepting": True,
        "health": Health.HEALTHY,
        "breaker": BreakerState.CLOSED,
    }
    defaults.update(kw)
    return SiteState(site=s or site(), **defaults)  # type: ignore[arg-type]


def order(
    lines: tuple[tuple[str, int], ...] = (("SKU-1", 1),),
    dest: GeoPoint = SEOUL,
    promise_hours: float = 48,
    placed_at: datetime = NOW,
) -> OrderRequest:
    return OrderRequest(
        channel="web",
        external_id="ext-1",
        customer=Customer("c-1", "Kim"),
        ship_to=ShipTo("capital", "06236", dest.lat, dest.lon),
        lines=tuple(OrderLine(sku, qty, Decimal(1000)) for sku, qty in lines),
        placed_at=placed_at,
        promised_by=placed_at + timedelta(hours=promise_hours),
    )

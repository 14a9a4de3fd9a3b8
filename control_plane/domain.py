"""The shared vocabulary of drctl: sites, regions, integrations, orders and errors (no I/O)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum


class Health(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    DOWN = "down"
    UNKNOWN = "unknown"


class BreakerState(StrEnum):
    CLOSED = "closed"
    HALF_OPEN = "half-open"
    OPEN = "open"

    @property
    def metric_value(self) -> int:
        """Return the gauge value of DESIGN §10 (0 closed, 1 half-open, 2 open)."""
        return {"closed": 0, "half-open": 1, "open": 2}[self.value]


class OrderStatus(StrEnum):
    RECEIVED = "received"
    ROUTED = "routed"
    ACCEPTED = "accepted"
    SHIPPED = "shipped"
    HELD = "held"
    CANCELLED = "cancelled"


class IntegrationKind(StrEnum):
    PAYMENT = "payment"
    CARRIER = "carrier"
    MARKETPLACE = "marketplace"
    ERP = "erp"
    WMS = "wms"
    NOTIFICATION = "notification"
    OTHER = "other"


class AttemptOutcome(StrEnum):
    ACCEPTED = "accepted"  # the DC acknowledged the order
    REJECTED = "rejected"  # the DC answered 4xx: it will not take it, but it is alive
    FAILED = "failed"  # 5xx, timeout or broken connection: counts against the breaker
    REFUSED = "refused"  # connection refused: the DC never saw the request
    BREAKER_OPEN = "breaker_open"  # not attempted, the site's breaker is open
    NO_STOCK = "no_stock"  # the reservation lost a race for the last units


@dataclass(frozen=True, slots=True)
class GeoPoint:
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Region:
    code: str
    name: str
    centroid: GeoPoint
    demand_share: float
    max_transit_hours: float = 48.0


@dataclass(frozen=True, slots=True)
class Site:
    code: str
    name: str
    region: str
    location: GeoPoint
    capacity_per_hour: int
    cost_per_order: Decimal
    handling_hours: float
    wms_url: str
    backups: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    tier: int | None = None
    rto_hours: float | None = None  # recommended by the latest BIA


@dataclass(frozen=True, slots=True)
class Integration:
    code: str
    name: str
    kind: IntegrationKind
    health_url: str
    scope: tuple[str, ...] = ("all",)
    fallback: str | None = None


@dataclass(frozen=True, slots=True)
class Sku:
    sku: str
    name: str
    unit_price: Decimal


@dataclass(frozen=True, slots=True)
class SalesChannel:
    """Where orders come from (the web shop, the app, a marketplace): intake takes only these."""

    code: str
    name: str


@dataclass(frozen=True, slots=True)
class World:
    """A retailer's static configuration: what `drctl world load` stores."""

    name: str
    regions: tuple[Region, ...]
    sites: tuple[Site, ...]
    integrations: tuple[Integration, ...]
    catalog: tuple[Sku, ...]
    stock: dict[tuple[str, str], int]  # (site, sku) -> units on hand
    channels: tuple[SalesChannel, ...] = ()


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    name: str
    email: str | None = None
    phone: str | None = None
    locale: str = "ko"
    notify_via: str = "email"


@dataclass(frozen=True, slots=True)
class ShipTo:
    region: str
    postal_code: str
    lat: float
    lon: float

    @property
    def point(self) -> GeoPoint:
        return GeoPoint(self.lat, self.lon)


@dataclass(frozen=True, slots=True)
class OrderLine:
    sku: str
    qty: int
    unit_price: Decimal


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """What a channel asks us to fulfil, before any routing."""

    channel: str
    external_id: str
    customer: Customer
    ship_to: ShipTo
    lines: tuple[OrderLine, ...]
    placed_at: datetime
    promised_by: datetime


@dataclass(frozen=True, slots=True)
class SiteState:
    """A site as routing sees it at one instant: static facts plus runtime state."""

    site: Site
    accepting: bool = True
    health: Health = Health.UNKNOWN
    breaker: BreakerState = BreakerState.CLOSED
    routed_this_hour: int = 0
    impaired: bool = False  # an integration it depends on is down without a healthy fallback
    ramp_weight: float = 1.0  # share of its orders routing may send it (below 1 while a failback ramps)

    @property
    def load_ratio(self) -> float:
        cap = self.site.capacity_per_hour
        return self.routed_this_hour / cap if cap > 0 else 1.0


@dataclass(frozen=True, slots=True)
class RouteAttempt:
    site: str
    outcome: AttemptOutcome
    reason: str
    at: datetime
    latency_ms: float | None = None


# --- errors: one vocabulary, mapped to problem+json in the API and to exit 2 in the CLI ---


@dataclass(frozen=True, slots=True)
class Recovery:
    """A measured recovery of a site (a drill's, or an outage incident's from start to resolved)."""

    site: str
    source: str  # drill | incident
    source_id: int
    measured_at: datetime
    recover_s: float
    detect_s: float | None = None
    mitigate_s: float | None = None
    rto_s: float | None = None  # the site's target when it was measured

    @property
    def within_rto(self) -> bool | None:
        return None if self.rto_s is None else self.recover_s <= self.rto_s


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks for a change, and the Idempotency-Key they sent with it (for the audit log)."""

    name: str
    idempotency_key: str | None = None
    channels: frozenset[str] | None = None  # the sales channels it may act for; None: any


@dataclass(frozen=True, slots=True)
class FieldError:
    path: str  # e.g. "lines[2].sku" or "sites[0].backups[1]"
    message: str


def split_by_weight(total: int, weights: Mapping[str, float]) -> dict[str, int]:
    """Split `total` units in proportion to `weights` (largest remainder: the parts sum to `total`).

    Keys keep their given order for ties; with no positive weight, everything goes to the first key.
    """
    if not weights:
        return {}
    weight_sum = sum(max(0.0, w) for w in weights.values())
    if weight_sum <= 0:
        weights = {k: float(i == 0) for i, k in enumerate(weights)}
        weight_sum = 1.0
    exact = {k: total * max(0.0, w) / weight_sum for k, w in weights.items()}
    out = {k: math.floor(v) for k, v in exact.items()}
    left = total - sum(out.values())
    order = list(weights)
    for k in sorted(exact, key=lambda k: (-(exact[k] - out[k]), order.index(k)))[:left]:
        out[k] += 1
    return out


def field_path(loc: Sequence[int | str]) -> str:
    """A validation error's location as a path an operator reads: `steps[2].with.site`."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top)"


class DomainError(Exception):
    """Base of every error a user can cause or see."""

    title = "Error"


class NotFound(DomainError):
    title = "Not found"


class Conflict(DomainError):
    """A change refused because it breaks a named rule."""

    title = "Conflict"

    def __init__(self, message: str, rule: str, details: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.rule = rule
        self.details = details or {}


class Forbidden(DomainError):
    """The caller is who it says, but may not do this."""

    title = "Forbidden"


class InvalidInput(DomainError):
    title = "Invalid input"

    def __init__(self, message: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []

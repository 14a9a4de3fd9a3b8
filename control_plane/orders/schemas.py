"""What crosses the HTTP boundary: request and response models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field, StrictFloat, StrictInt

from control_plane.domain import Customer, FieldError, InvalidInput, OrderLine, OrderRequest, ShipTo
from control_plane.orders.validate import TimeLimits, check_placed, check_promised
from control_plane.web.inputs import StrictIn

_In = StrictIn  # every part of an order body


class CustomerIn(_In):
    id: str = Field(min_length=1, max_length=128)
    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    phone: str | None = Field(default=None, max_length=40, pattern=r"^\+?[0-9 ()-]{6,}$")
    locale: Literal["ko", "en"] = "ko"
    notify_via: Literal["email", "sms", "webhook"] = "email"


class ShipToIn(_In):
    region: str = Field(min_length=1, max_length=64)
    postal_code: str = Field(min_length=1, max_length=16)
    lat: StrictFloat = Field(ge=-90, le=90)
    lon: StrictFloat = Field(ge=-180, le=180)


class LineIn(_In):
    sku: str = Field(min_length=1, max_length=64)
    qty: StrictInt = Field(gt=0, le=10_000)
    unit_price: Decimal = Field(ge=0, max_digits=12, decimal_places=2)


class OrderIn(_In):
    channel: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    external_id: str = Field(min_length=1, max_length=128)
    customer: CustomerIn
    ship_to: ShipToIn
    lines: list[LineIn] = Field(min_length=1, max_length=200)
    placed_at: datetime | None = None
    promised_by: datetime | None = Field(default=None, description="defaults to placed_at + 48 h")

    def to_request(
        self, now: datetime, default_promise_hours: float, limits: TimeLimits | None = None
    ) -> OrderRequest:
        """The domain request; InvalidInput when a time lies outside `limits` (None: built in process)."""
        placed = _utc(self.placed_at, "placed_at") if self.placed_at else now
        if limits is not None:
            check_placed(placed, now, limits)
        promised = (
            _utc(self.promised_by, "promised_by")
            if self.promised_by
            else placed + timedelta(hours=default_promise_hours)
        )
        if limits is not None:
            check_promised(promised, placed, limits)
        return OrderRequest(
            channel=self.channel,
            external_id=self.external_id,
            customer=Customer(**self.customer.model_dump()),
            ship_to=ShipTo(
                self.ship_to.region,
                self.ship_to.postal_code,
                float(self.ship_to.lat),
                float(self.ship_to.lon),
            ),
            lines=tuple(OrderLine(li.sku, li.qty, li.unit_price) for li in self.lines),
            placed_at=placed,
            promised_by=promised,
        )


def _utc(dt: datetime, path: str) -> datetime:
    """Timestamps without an offset are taken as UTC."""
    try:
        return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:00-14:00 is past the last representable instant in UTC
        raise InvalidInput(f"{path}: out of range", [FieldError(path, "out of range")]) from None


class AttemptOut(BaseModel):
    at: datetime
    site: str | None
    outcome: str
    reason: str
    latency_ms: float | None


class LineOut(BaseModel):
    sku: str
    qty: int
    unit_price: Decimal


class OrderOut(BaseModel):
    id: str
    channel: str
    external_id: str
    status: str
    site: str | None
    dc_ref: str | None
    eta: datetime | None
    placed_at: datetime
    promised_by: datetime
    delayed: bool
    total: Decimal
    customer_id: str
    ship_region: str
    lines: list[LineOut]
    attempts: list[AttemptOut]
    created_at: datetime
    updated_at: datetime
    shipped_at: datetime | None = None  # the DC's own time, from its event (or our time, when polled)
    cancelled_at: datetime | None = None


class OrderSummary(BaseModel):
    id: str
    channel: str
    external_id: str
    status: str
    site: str | None
    eta: datetime | None
    promised_by: datetime
    updated_at: datetime

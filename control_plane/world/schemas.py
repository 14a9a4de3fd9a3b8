"""What crosses the HTTP boundary for sites and breakers."""

from __future__ import annotations

from pydantic import BaseModel


class SiteOut(BaseModel):
    code: str
    name: str
    region: str
    accepting: bool
    health: str
    breaker: str
    tier: int | None
    rto_hours: float | None
    capacity_per_hour: int
    routed_this_hour: int
    load_ratio: float
    ramp_weight: float
    backups: list[str]
    depends_on: list[str]
    impaired: bool = False
    impaired_by: list[str] = []  # why an integration outage leaves the site unable to ship


class BreakerOut(BaseModel):
    name: str
    state: str
    fail_counter: int

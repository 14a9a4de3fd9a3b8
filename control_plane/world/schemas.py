"""What crosses the HTTP boundary for sites and breakers."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from control_plane.web.inputs import StrictIn


class RecoveryOut(BaseModel):
    """The site's last measured recovery: a drill's, or an outage incident's (start to resolved)."""

    source: str  # drill | incident
    source_id: int
    measured_at: datetime
    detect_s: float | None
    mitigate_s: float | None
    recover_s: float
    rto_s: float | None  # the target when it was measured
    within_rto: bool | None


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
    last_recovery: RecoveryOut | None = None  # beside rto_hours: the target and what was measured
    failover_expires_at: datetime | None = None  # a failover with an expiry: when a failback is due
    rpo_seconds: int | None = None  # beside rto_hours, from the same BIA run
    bia_run_id: int | None = None  # the BIA run tier, RTO and RPO come from


class BreakerOut(BaseModel):
    name: str
    state: str
    held: bool  # held open by an operator: admits nothing until closed or reset
    fail_counter: int
    # after an open: calls this process had let through that were still out when it answered
    in_flight: int | None = None


class BreakerActionIn(StrictIn):
    reason: str = Field(min_length=3, max_length=500, description="why: kept in the audit log")

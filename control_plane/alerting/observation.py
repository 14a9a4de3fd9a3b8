"""What the alert rules look at: one snapshot of the control plane's state, gathered by the caller.

The snapshot is plain data so the rules stay pure; the scheduler job fills it from the health
tracker, the breakers, the store and the metrics it already keeps. Rates and ratios are computed
over the same windows as the PromQL in deploy/prometheus/alerts.yml, so both engines agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from control_plane.domain import BreakerState, Health


@dataclass(frozen=True, slots=True)
class DeliveryCounts:
    """Customer notices of one channel over the last `NOTICE_WINDOW_S`, by outcome."""

    sent: int = 0
    failed: int = 0  # suppressed notices are not delivery attempts and are not counted

    @property
    def failure_ratio(self) -> float:
        attempts = self.sent + self.failed
        return self.failed / attempts if attempts else 0.0


@dataclass(frozen=True, slots=True)
class IntakeRate:
    """A channel's order intake now against what is normal for this hour of the week."""

    observed_per_hour: float  # orders/h over the last `INTAKE_WINDOW_S`
    expected_per_hour: float  # the same window one week earlier (as `offset 1w` in PromQL)


NOTICE_WINDOW_S = 15 * 60
INTAKE_WINDOW_S = 30 * 60


@dataclass(frozen=True, slots=True)
class Observation:
    site_health: Mapping[str, Health] = field(default_factory=dict)
    integration_health: Mapping[str, Health] = field(default_factory=dict)
    breakers: Mapping[str, BreakerState] = field(default_factory=dict)
    orders_held: int = 0
    site_load_ratio: Mapping[str, float] = field(default_factory=dict)
    notices: Mapping[str, DeliveryCounts] = field(default_factory=dict)  # by notice channel
    intake: Mapping[str, IntakeRate] = field(default_factory=dict)  # by sales channel
    # last measured recovery and the RTO target now, in seconds, of sites that have both
    site_recovery: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    # sites still failed over past their failover's expiry: seconds past it
    failovers_expired: Mapping[str, float] = field(default_factory=dict)

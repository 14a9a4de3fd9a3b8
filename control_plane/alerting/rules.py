"""The eight built-in alert rules, twins of deploy/prometheus/alerts.yml (same names, `for`, severity).

Thresholds are one dataclass so an installation can tune them; the defaults are the values the
PromQL file hard-codes, and tests/test_prometheus_rules.py keeps the two in step. Summaries use
labels only so both engines render the same text; descriptions may show the value.
"""

from __future__ import annotations

from dataclasses import dataclass

from control_plane.alerting.engine import AlertRule, Sample
from control_plane.alerting.observation import Observation
from control_plane.domain import BreakerState, Health


@dataclass(frozen=True, slots=True)
class Thresholds:
    site_down_for_s: float = 60.0  # on top of the probe hysteresis (interval x failure threshold)
    integration_down_for_s: float = 120.0
    breaker_open_for_s: float = 60.0  # a breaker that recovers within a minute is not news
    orders_held_min: int = 1
    orders_held_for_s: float = 300.0  # retries place most held orders within minutes
    load_ratio_high: float = 0.9
    backup_capacity_for_s: float = 300.0
    notice_failure_ratio: float = 0.2
    notice_min_failures: int = 5  # so one bounced address out of three is not an alert
    notice_failing_for_s: float = 600.0
    intake_drop_ratio: float = 0.3  # intake below 30 % of the same hour last week
    intake_min_expected_per_hour: float = 30.0  # quiet channels/hours are too noisy to judge
    intake_dropped_for_s: float = 900.0


def builtin_rules(t: Thresholds = Thresholds()) -> tuple[AlertRule, ...]:
    """SiteDown, IntegrationDown, BreakerOpen, OrdersHeld, BackupCapacityHigh,
    NoticeDeliveryFailing, OrderIntakeDropped and RecoveryExceedsRto, with thresholds `t`."""

    def site_down(o: Observation) -> list[Sample]:
        return [Sample({"site": s}, 0.0) for s, h in sorted(o.site_health.items()) if h is Health.DOWN]

    def failover_expired(o: Observation) -> list[Sample]:
        return [Sample({"site": site}, past) for site, past in sorted(o.failovers_expired.items())]

    def integration_down(o: Observation) -> list[Sample]:
        return [
            Sample({"integration": i}, 0.0)
            for i, h in sorted(o.integration_health.items())
            if h is Health.DOWN
        ]

    def breaker_open(o: Observation) -> list[Sample]:
        # Half-open counts: a breaker cycling open -> half-open -> open has not recovered, and
        # counting it keeps the for-duration from restarting at every trial call.
        return [
            Sample({"breaker": b}, float(s.metric_value))
            for b, s in sorted(o.breakers.items())
            if s is not BreakerState.CLOSED
        ]

    def orders_held(o: Observation) -> list[Sample]:
        return [Sample({}, float(o.orders_held))] if o.orders_held >= t.orders_held_min else []

    def backup_capacity_high(o: Observation) -> list[Sample]:
        # Every site is some other site's backup, so any site near capacity leaves less room to
        # absorb a failover.
        return [
            Sample({"site": s}, r) for s, r in sorted(o.site_load_ratio.items()) if r >= t.load_ratio_high
        ]

    def notice_delivery_failing(o: Observation) -> list[Sample]:
        return [
            Sample({"channel": c}, n.failure_ratio)
            for c, n in sorted(o.notices.items())
            if n.failed >= t.notice_min_failures and n.failure_ratio >= t.notice_failure_ratio
        ]

    def order_intake_dropped(o: Observation) -> list[Sample]:
        return [
            Sample({"channel": c}, r.expected_per_hour)
            for c, r in sorted(o.intake.items())
            if r.expected_per_hour >= t.intake_min_expected_per_hour
            and r.observed_per_hour < t.intake_drop_ratio * r.expected_per_hour
        ]

    def recovery_exceeds_rto(o: Observation) -> list[Sample]:
        return [
            Sample({"site": s}, recover_s)
            for s, (recover_s, rto_s) in sorted(o.site_recovery.items())
            if recover_s > rto_s
        ]

    return (
        AlertRule(
            "SiteDown",
            "critical",
            t.site_down_for_s,
            site_down,
            summary="DC {site} is down",
            description="Probes of {site} fail past the failure threshold; routing sends its orders "
            "to backups.",
        ),
        AlertRule(
            "IntegrationDown",
            "critical",
            t.integration_down_for_s,
            integration_down,
            summary="Integration {integration} is down",
            description="Probes of {integration} fail past the failure threshold; sites and channels "
            "without a usable fallback are impaired.",
        ),
        AlertRule(
            "BreakerOpen",
            "warning",
            t.breaker_open_for_s,
            breaker_open,
            summary="Circuit breaker {breaker} is not closed",
            description="Breaker {breaker} is open or half-open (state {value:g}); calls through it "
            "are refused or on trial.",
        ),
        AlertRule(
            "OrdersHeld",
            "critical",
            t.orders_held_for_s,
            orders_held,
            summary="Orders are held: no DC can take them",
            description="{value:.0f} orders are held and retried; check DC health, stock and capacity.",
        ),
        AlertRule(
            "FailoverExpired",
            "warning",
            0.0,
            failover_expired,
            summary="The failover of {site} has expired",
            description="{site} is still out of routing {value:.0f} s past its failover's expiry: fail it "
            "back, or fail it over again with a new expiry.",
        ),
        AlertRule(
            "BackupCapacityHigh",
            "warning",
            t.backup_capacity_for_s,
            backup_capacity_high,
            summary="DC {site} is near its hourly capacity",
            description="{site} has used {value:.0%} of its hourly capacity; little room is left to "
            "absorb a failover.",
        ),
        AlertRule(
            "NoticeDeliveryFailing",
            "warning",
            t.notice_failing_for_s,
            notice_delivery_failing,
            summary="Customer notices over {channel} are failing",
            description="{value:.0%} of {channel} notice deliveries failed in the last 15 minutes.",
        ),
        AlertRule(
            "OrderIntakeDropped",
            "warning",
            t.intake_dropped_for_s,
            order_intake_dropped,
            summary="Order intake from {channel} has dropped",
            # f-string for the tunable threshold; doubled braces stay placeholders for render().
            description=f"Orders from {{channel}} are below {t.intake_drop_ratio:.0%} of the same hour "
            "last week ({value:.0f}/h then).",
        ),
        AlertRule(
            "RecoveryExceedsRto",
            "warning",
            0.0,  # a measurement, not a condition that may pass: it holds until the next one
            recovery_exceeds_rto,
            summary="Measured recovery of {site} is over its RTO",
            description="The last drill or outage of {site} took {value:.0f} s to recover, more than "
            "the RTO target its BIA set; rehearse the failover or revisit the target.",
        ),
    )

"""Prometheus metrics of DESIGN §10, built on a registry handed in (tests get a fresh one).

With several worker processes set PROMETHEUS_MULTIPROC_DIR: counters and histograms are then
merged across workers by prometheus-client's multiprocess collector. Gauges of shared state
(health, load, held orders, incidents, alerts) are re-read from the store by every worker every few
seconds and use `mostrecent`, so a dead worker's last value loses to the live ones. Gauges of a
worker's own state (its breakers, whether it leads) use `livemax` ("on any live worker"); a worker
marks its files dead when it stops (`mark_process_dead`).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def multiprocess_enabled() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def mark_this_process_dead() -> None:
    """Drop this worker's live gauges from the merged view (multiprocess mode only)."""
    if multiprocess_enabled():
        multiprocess.mark_process_dead(os.getpid())


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        mp = multiprocess_enabled()
        gauge_mode = {"multiprocess_mode": "mostrecent"} if mp else {}
        own_mode = {"multiprocess_mode": "livemax"} if mp else {}
        # In multiprocess mode metrics must not be registered on the scrape registry itself.
        reg = None if mp else registry
        if mp:
            MultiProcessCollector(registry)
        self.orders_received = Counter(
            "drctl_orders_received_total", "Orders taken at intake", ["channel"], registry=reg
        )
        self.orders_routed = Counter(
            "drctl_orders_routed_total",
            "Orders a DC accepted, by site and why",
            ["site", "reason"],
            registry=reg,
        )
        self.orders_rerouted = Counter(
            "drctl_orders_rerouted_total",
            "Orders moved from one DC to another",
            ["from_site", "to_site"],
            registry=reg,
        )
        self.orders_held = Gauge(
            "drctl_orders_held", "Orders no DC could take yet", registry=reg, **gauge_mode
        )
        self.routing_seconds = Histogram(
            "drctl_routing_seconds",
            "Time to route and reserve an order",
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.dispatch_seconds = Histogram(
            "drctl_dispatch_seconds",
            "Time of one DC order call",
            ["site"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.breaker_state = Gauge(
            "drctl_breaker_state", "0 closed, 1 half-open, 2 open", ["breaker"], registry=reg, **own_mode
        )
        self.breaker_store_up = Gauge(
            "drctl_breaker_store_up",
            "1 while the shared breaker store (Redis) answers this process; 0: breakers run per process",
            registry=reg,
            **({"multiprocess_mode": "livemin"} if mp else {}),
        )
        self.site_health = Gauge(
            "drctl_site_health",
            "1 healthy, 0.5 degraded, 0 down, -1 unknown",
            ["site"],
            registry=reg,
            **gauge_mode,
        )
        self.site_accepting = Gauge(
            "drctl_site_accepting", "1 when routing may send orders", ["site"], registry=reg, **gauge_mode
        )
        self.site_load_ratio = Gauge(
            "drctl_site_load_ratio",
            "Orders routed this hour / hourly capacity",
            ["site"],
            registry=reg,
            **gauge_mode,
        )
        self.integration_health = Gauge(
            "drctl_integration_health",
            "1 healthy, 0.5 degraded, 0 down, -1 unknown",
            ["integration"],
            registry=reg,
            **gauge_mode,
        )
        self.notices_total = Counter(
            "drctl_notices_total", "Customer delay notices by channel and outcome", ["channel", "status"],
            registry=reg,
        )  # fmt: skip
        # Known label values start at 0 so rate() and the NoticeDeliveryFailing ratio work from the
        # first failure on (a series that appears with its first increment hides that increment).
        for channel in NOTICE_CHANNELS:
            for status in NOTICE_STATUSES:
                self.notices_total.labels(channel, status)
        self.incidents_open = Gauge(
            "drctl_incidents_open", "Incidents not yet resolved", registry=reg, **gauge_mode
        )
        self.alerts_firing = Gauge(
            "drctl_alerts_firing",
            "Firing alerts of the built-in engine, per rule",
            ["alert"],
            registry=reg,
            **gauge_mode,
        )
        self.drill_recovery_seconds = Gauge(
            "drctl_drill_recovery_seconds",
            "Last measured time to recover of a site (a chaos drill, or an outage incident resolved)",
            ["site"],
            registry=reg,
            **gauge_mode,
        )
        self.site_rto_seconds = Gauge(
            "drctl_site_rto_seconds", "The site's RTO target from the latest BIA", ["site"], registry=reg,
            **gauge_mode,
        )  # fmt: skip
        self.site_failover_expires = Gauge(
            "drctl_site_failover_expires_timestamp_seconds",
            "When the site's failover expires (Unix time; 0: no expiring failover)",
            ["site"],
            registry=reg,
            **gauge_mode,
        )
        self.probe_seconds = Histogram(
            "drctl_probe_seconds",
            "Duration of one health probe (failed probes included)",
            ["target"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.scheduler_leader = Gauge(
            "drctl_scheduler_leader",
            "1 while this process runs the periodic jobs (the elected leader)",
            registry=reg,
            **own_mode,
        )
        self.alert_deliveries = Counter(
            "drctl_alert_deliveries_total",
            "Alert notifications handed to a channel, by outcome (sent, retry, failed, expired)",
            ["channel", "status"],
            registry=reg,
        )


NOTICE_CHANNELS = ("email", "sms", "webhook")
NOTICE_STATUSES = ("sent", "failed", "suppressed", "retry")
HEALTH_VALUE = {"healthy": 1.0, "degraded": 0.5, "down": 0.0, "unknown": -1.0}

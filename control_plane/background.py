"""Every replica's periodic work: retry held orders, deliver DC cancels and customer notices,
breaker signals, gauges.

Runs in one thread per process. Claims use SKIP LOCKED on PostgreSQL, so several replicas can run
it side by side without taking the same order twice. Leader-only work (probes, alert evaluation and
delivery) runs in `control_plane.monitoring.scheduler`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from control_plane.alerting import repository as alert_repo
from control_plane.alerting.rules import builtin_rules
from control_plane.context import AppContext
from control_plane.metrics import HEALTH_VALUE
from control_plane.monitoring.jobs import Prober
from control_plane.operations import repository as incident_repo
from control_plane.orders import repository as repo
from control_plane.store.tables import BreakerEventRow
from control_plane.world import repository as world_repo

log = logging.getLogger("drctl.background")
RULE_NAMES = tuple(r.name for r in builtin_rules())
GAUGE_INTERVAL_S = 5.0
NOTICE_BUDGET_S = 2.0  # seconds of notice delivery per tick at most


class BackgroundLoop:
    def __init__(
        self, ctx: AppContext, prober: Prober, extra_jobs: Sequence[Callable[[], None]] = ()
    ) -> None:
        self._ctx = ctx
        self._prober = prober
        self._extra_jobs = tuple(extra_jobs)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drctl-background", daemon=True)
        self._gauges_at = float("-inf")

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        interval = self._ctx.settings.retry_interval_s
        while not self._stop.wait(interval):
            self.tick()

    def tick(self) -> None:
        """One pass of every job; a failing job is logged and never stops the others."""
        for job in (
            self._store_breaker_changes,
            self._retry_orders,
            self._send_cancels,
            self._send_notices,
            self._refresh_gauges,
            *self._extra_jobs,
        ):
            try:
                job()
            except Exception:
                log.exception("background job %s failed", job.__name__)

    def _retry_orders(self) -> None:
        self._ctx.pipeline.redispatch_due()

    def _send_cancels(self) -> None:
        self._ctx.cancels.process_due()

    def _send_notices(self) -> None:
        # a failover makes hundreds of letters due at once: keep claiming batches for a while
        # rather than one batch per tick, bounded so the other jobs still get their turn
        if self._ctx.notices is None:
            return
        deadline = time.monotonic() + NOTICE_BUDGET_S
        while self._ctx.notices.deliver_due() and time.monotonic() < deadline and not self._stop.is_set():
            pass

    def _store_breaker_changes(self) -> None:
        changes = []
        while not self._ctx.breaker_changes.empty():
            changes.append(self._ctx.breaker_changes.get_nowait())
        if not changes:
            return
        try:
            with self._ctx.sessions.begin() as s:
                s.add_all(
                    BreakerEventRow(breaker=c.breaker, from_state=c.old.value, to_state=c.new.value, at=c.at)
                    for c in changes
                )
        except Exception:
            # kept for the next tick: a lost "closed" would leave the site's health capped at degraded
            for c in changes:
                self._ctx.breaker_changes.put(c)
            raise
        # a breaker opening is passive evidence about the DC: its health is degraded at once
        sites = {st.site.code for st in self._ctx.sites.snapshot()}
        for c in changes:
            if c.breaker in sites:
                self._prober.breaker_changed(c.breaker, c.new, c.at)

    def _refresh_gauges(self) -> None:
        # scrapes come every 15 s or so: no need to count held orders on every retry tick
        now = time.monotonic()
        if now - self._gauges_at < GAUGE_INTERVAL_S:
            return
        self._gauges_at = now
        m = self._ctx.metrics
        with self._ctx.sessions() as s:
            m.orders_held.set(repo.held_count(s))
            m.incidents_open.set(incident_repo.open_count(s))
            for code, health in world_repo.integration_health(s).items():
                m.integration_health.labels(code).set(HEALTH_VALUE[health.value])
            firing = alert_repo.firing_counts(s)
            recoveries = world_repo.last_recoveries(s)
            expiries = world_repo.failover_expiries(s)
        # every replica exports the same alert gauges, read from the shared store
        for rule in RULE_NAMES:
            m.alerts_firing.labels(rule).set(firing.get(rule, 0))
        for st in self._ctx.sites.snapshot():
            code = st.site.code
            m.site_accepting.labels(code).set(1 if st.accepting else 0)
            m.site_health.labels(code).set(HEALTH_VALUE[st.health.value])
            m.site_load_ratio.labels(code).set(st.load_ratio)
            m.breaker_state.labels(code).set(st.breaker.metric_value)
            if st.site.rto_hours is not None:
                m.site_rto_seconds.labels(code).set(st.site.rto_hours * 3600)
            if code in recoveries:
                m.drill_recovery_seconds.labels(code).set(recoveries[code].recover_s)
            expires = expiries.get(code)
            m.site_failover_expires.labels(code).set(expires.timestamp() if expires else 0)

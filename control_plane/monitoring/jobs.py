"""Probe every DC and integration and fold the results into the stored health state machine."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from control_plane.domain import BreakerState
from control_plane.metrics import Metrics
from control_plane.monitoring import repository as health_repo
from control_plane.monitoring.health import ProbePolicy, Signal, Transition, observe_probe, observe_signal
from control_plane.monitoring.probes import Probe
from control_plane.world import repository as world_repo

log = logging.getLogger("drctl.probes")


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    target: str  # site:<code> | integration:<code>
    url: str


def probe_targets(session: Session) -> list[ProbeTarget]:
    """Every site's WMS health endpoint (DESIGN §4) and every integration's health URL."""
    targets = [
        ProbeTarget(health_repo.site_target(r.code), r.wms_url.rstrip("/") + "/health")
        for r in world_repo.list_site_rows(session)
    ]
    targets += [
        ProbeTarget(health_repo.integration_target(i.code), i.health_url)
        for i in world_repo.list_integrations(session)
    ]
    return targets


class Prober:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        probe: Probe,
        policy: ProbePolicy,
        metrics: Metrics,
        on_transition: Callable[[Transition], None],
    ) -> None:
        self._sessions = sessions
        self._probe = probe
        self._policy = policy
        self._metrics = metrics
        self._on_transition = on_transition

    def close(self) -> None:
        self._probe.close()

    def targets(self) -> list[ProbeTarget]:
        with self._sessions() as s:
            return probe_targets(s)

    def probe(self, target: ProbeTarget, leading: Callable[[], bool] = lambda: True) -> Transition | None:
        """Probe `target` once and store what it changed (unless the lead was lost meanwhile)."""
        result = self._probe.check(target.url, self._policy.timeout_s)
        self._metrics.probe_seconds.labels(target.target).observe(result.latency_s or 0.0)
        if not leading():
            return None
        with self._sessions.begin() as s:
            transition = health_repo.apply(
                s, target.target, lambda st: observe_probe(st, result, self._policy), result.latency_s
            )
        if transition is not None:
            self._noted(transition)
        return transition

    def breaker_changed(self, site: str, new: BreakerState, at: datetime) -> Transition | None:
        """A site's breaker opened or closed: passive evidence about its health."""
        if new is BreakerState.OPEN:
            signal = Signal.BREAKER_OPENED
        elif new is BreakerState.CLOSED:
            signal = Signal.BREAKER_CLOSED
        else:
            return None  # half-open is a trial, not news
        with self._sessions.begin() as s:
            transition = health_repo.apply(
                s, health_repo.site_target(site), lambda st: observe_signal(st, signal, at, self._policy)
            )
        if transition is not None:
            self._noted(transition)
        return transition

    def _noted(self, t: Transition) -> None:
        level = logging.WARNING if t.to.value in ("down", "degraded") else logging.INFO
        log.log(level, "%s: %s -> %s (%s)", t.target, t.from_.value, t.to.value, t.reason)
        self._on_transition(t)

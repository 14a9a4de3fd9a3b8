"""One tick of the built-in alert engine: observe, evaluate, store, queue deliveries, open incidents.

The observation is read from the store (health, held orders, intake) and this process's breaker
board (shared across replicas when Redis holds breaker state). State, deliveries and incident
events commit in one transaction, so a crash never sends a notification for a state it did not
keep, nor keeps a state whose notification it forgot (transactional outbox).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from control_plane.alerting import repository as alert_repo
from control_plane.alerting.engine import AlertRule, Notification, NotificationKind, evaluate
from control_plane.alerting.incidents import AlertEvent, AlertHook, after_alert, apply_alert_event
from control_plane.alerting.observation import (
    INTAKE_WINDOW_S,
    NOTICE_WINDOW_S,
    DeliveryCounts,
    IntakeRate,
    Observation,
)
from control_plane.notices import repository as notice_repo
from control_plane.operations.repository import expired_failovers
from control_plane.orders import repository as order_repo
from control_plane.store.tables import OrderRow
from control_plane.world import repository as world_repo
from control_plane.world.state import SiteStateCache
from failover.breakers import BreakerBoard

log = logging.getLogger("drctl.alerts")
WEEK = timedelta(weeks=1)


class AlertEvaluator:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        rules: Sequence[AlertRule],
        sites: SiteStateCache,
        board: BreakerBoard,
        channels: Callable[[], Sequence[str]],
        clock: Callable[[], datetime],
        repeat_interval_s: float,
        keep_resolved_s: float,
        on_alert: AlertHook | None = None,
    ) -> None:
        self._sessions = sessions
        self._rules = tuple(rules)
        self._sites = sites
        self._board = board
        self._channels = channels
        self._clock = clock
        self._repeat_s = repeat_interval_s
        self._keep_s = keep_resolved_s
        self._on_alert = on_alert

    def tick(self) -> list[Notification]:
        """Evaluate every rule once; return the notifications queued."""
        now = self._clock()
        channels = list(self._channels())
        # observed before the write transaction: on SQLite a second connection inside it (the site
        # cache's refresh) would wait for the write lock this one holds
        with self._sessions() as s:
            observation = self.observe(s, now)
        with self._sessions.begin() as s:
            states = alert_repo.load_states(s)
            silences = alert_repo.current_silences(s, now)
            new_states, notes = evaluate(
                self._rules, observation, states, silences, now, self._repeat_s, self._keep_s
            )
            alert_repo.save_states(s, states, new_states)
            for note in notes:
                alert_repo.add_deliveries(s, note, channels, now)
                if note.kind is not NotificationKind.REPEAT:
                    event = _event(note)
                    after_alert(self._on_alert, s, event, apply_alert_event(s, event, now), now)
        for note in notes:
            log.warning(
                "alert %s %s %s: %s (to %s)",
                note.labels.get("alertname"),
                note.kind.value,
                _subject_labels(note),
                note.annotations.get("summary", ""),
                ", ".join(channels) or "no channel configured",
            )
        return notes

    def observe(self, s: Session, now: datetime) -> Observation:
        """The snapshot the rules look at: the same sources as DESIGN §10's gauges."""
        sites = self._sites.snapshot()  # the leader's cache is refreshed on every health transition
        rto = {st.site.code: st.site.rto_hours for st in sites}
        return Observation(
            site_health={st.site.code: st.health for st in sites},
            integration_health=world_repo.integration_health(s),
            breakers=self._board.states(),
            orders_held=order_repo.held_count(s),
            site_load_ratio={st.site.code: st.load_ratio for st in sites},
            intake=_intake_rates(s, now),
            site_recovery={
                code: (r.recover_s, rto_hours * 3600)
                for code, r in world_repo.last_recoveries(s).items()
                if (rto_hours := rto.get(code)) is not None
            },
            failovers_expired={
                r.code: (now - r.failover_expires_at).total_seconds()
                for r in expired_failovers(s, now)
                if r.failover_expires_at is not None
            },
            notices={
                channel: DeliveryCounts(sent, failed)
                for channel, (sent, failed) in notice_repo.outcomes_since(
                    s, now - timedelta(seconds=NOTICE_WINDOW_S)
                ).items()
            },
        )


def _intake_rates(s: Session, now: datetime) -> dict[str, IntakeRate]:
    window = timedelta(seconds=INTAKE_WINDOW_S)
    per_hour = 3600 / INTAKE_WINDOW_S
    observed = _counts_by_channel(s, now - window, now)
    expected = _counts_by_channel(s, now - WEEK - window, now - WEEK)
    return {
        ch: IntakeRate(observed.get(ch, 0) * per_hour, expected.get(ch, 0) * per_hour)
        for ch in sorted(set(observed) | set(expected))
    }


def _counts_by_channel(s: Session, start: datetime, end: datetime) -> dict[str, int]:
    rows = s.execute(
        select(OrderRow.channel, func.count())
        .where(OrderRow.created_at >= start, OrderRow.created_at < end)
        .group_by(OrderRow.channel)
    )
    return {channel: int(n) for channel, n in rows}


def _event(note: Notification) -> AlertEvent:
    return AlertEvent(
        alertname=note.labels.get("alertname", ""),
        status="resolved" if note.kind is NotificationKind.RESOLVED else "firing",
        fingerprint=note.fingerprint,
        starts_at=note.starts_at,
        labels=dict(note.labels),
        summary=note.annotations.get("summary", ""),
        ends_at=note.ends_at,
        source="builtin",
    )


def _subject_labels(note: Notification) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(note.labels.items()) if k not in ("alertname", "severity"))

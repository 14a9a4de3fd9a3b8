"""Deliver queued alert notifications, one job per channel, each channel behind its own breaker.

One job per channel means a slow or failing channel delays only its own queue; its breaker stops
it from being hammered (calls are refused while open and the delivery waits for the next try);
each delivery is retried with capped, jittered backoff up to `max_attempts`, then marked failed.
No database transaction is held across a send: rows are leased, sent, then recorded.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from control_plane.alerting import repository as alert_repo
from control_plane.alerting.channels import AlertChannel, ChannelError
from control_plane.metrics import Metrics
from control_plane.store.tables import AlertDeliveryRow
from failover.backoff import retry_delay_s
from failover.breakers import BreakerBoard, BreakerOpen

log = logging.getLogger("drctl.alert_delivery")


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    timeout_s: float = 5.0
    max_attempts: int = 6
    backoff_base_s: float = 2.0
    backoff_max_s: float = 300.0
    batch: int = 10  # leased together: keep it small so the lease outlives the batch's sends
    max_age_s: float = 3600.0  # older notifications are dropped, not sent late in a flood after an outage


class AlertDelivery:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        channels: dict[str, AlertChannel],
        breakers: BreakerBoard,
        metrics: Metrics,
        policy: DeliveryPolicy,
        clock: Callable[[], datetime],
    ) -> None:
        self._sessions = sessions
        self._channels = channels
        self._breakers = breakers
        self._metrics = metrics
        self._policy = policy
        self._clock = clock
        self._rnd = random.Random()

    @property
    def channel_names(self) -> list[str]:
        return sorted(self._channels)

    def deliver_due(self, channel: str, leading: Callable[[], bool] = lambda: True) -> int:
        """Send `channel`'s due notifications; return how many were sent.

        `leading` is asked before each send: a process that lost the lead stops at once and leaves
        the rest of its leased batch to the next leader once the lease runs out.
        """
        ch = self._channels[channel]
        # an SMTP send may take a timeout per step (connect, greeting, data): lease for the worst case
        lease_s = self._policy.batch * self._policy.timeout_s * 3 + 5
        now = self._clock()
        with self._sessions.begin() as s:
            claimed = [
                (r.id, r.attempts, r.created_at, alert_repo.notification_from_json(r.payload))
                for r in alert_repo.claim_due_deliveries(s, channel, now, lease_s, self._policy.batch)
            ]
        sent = 0
        breaker = self._breakers.get(f"alert:{channel}")
        for row_id, attempts, created_at, note in claimed:
            if not leading():
                break
            if (now - created_at).total_seconds() > self._policy.max_age_s:
                self._record(row_id, self._expired)
                self._metrics.alert_deliveries.labels(channel, "expired").inc()
                log.warning(
                    "alert delivery %s over %s dropped: older than %g s",
                    row_id,
                    channel,
                    self._policy.max_age_s,
                )
                continue
            try:
                admission = breaker.admit()
            except BreakerOpen:
                # not attempted: try again once the breaker lets a trial through
                self._record(row_id, lambda r: self._later(r, self._breakers.policy.reset_timeout_s))
                continue
            try:
                provider_id = ch.send(note)
            except Exception as exc:
                breaker.record_failure(admission, exc)
                self._failed(channel, row_id, attempts + 1, _safe_error(exc))
                continue
            breaker.record_success(admission)
            self._record(row_id, lambda r, pid=provider_id: self._sent(r, pid))
            self._metrics.alert_deliveries.labels(channel, "sent").inc()
            sent += 1
        return sent

    def close(self) -> None:
        for ch in self._channels.values():
            try:
                ch.close()
            except Exception:
                log.exception("closing alert channel %s failed", ch.name)

    def _failed(self, channel: str, row_id: int, attempts: int, error: str) -> None:
        final = attempts >= self._policy.max_attempts

        def update(r: AlertDeliveryRow) -> None:
            r.attempts, r.last_error = attempts, error
            if final:
                r.status = "failed"
            else:
                delay = retry_delay_s(
                    attempts, self._policy.backoff_base_s, self._policy.backoff_max_s, self._rnd
                )
                r.next_attempt_at = self._clock() + timedelta(seconds=delay)

        self._record(row_id, update)
        status = "failed" if final else "retry"
        self._metrics.alert_deliveries.labels(channel, status).inc()
        log.warning("alert delivery %s over %s: attempt %s %s: %s", row_id, channel, attempts, status, error)

    def _sent(self, r: AlertDeliveryRow, provider_id: str) -> None:
        r.status, r.provider_id, r.sent_at = "sent", provider_id[:300], self._clock()
        r.attempts += 1

    def _expired(self, r: AlertDeliveryRow) -> None:
        r.status, r.last_error = "expired", f"not delivered within {self._policy.max_age_s:g} s"

    def _later(self, r: AlertDeliveryRow, seconds: float) -> None:
        r.next_attempt_at = self._clock() + timedelta(seconds=seconds)

    def _record(self, row_id: int, change: Callable[[AlertDeliveryRow], None]) -> None:
        with self._sessions.begin() as s:
            row = s.get(AlertDeliveryRow, row_id)
            if row is not None:
                change(row)


def _safe_error(exc: BaseException) -> str:
    # channels raise ChannelError with messages free of secrets; anything else shows its type only
    return str(exc)[:500] if isinstance(exc, ChannelError) else type(exc).__name__

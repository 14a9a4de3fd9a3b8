"""Deliver queued alert notifications, one job per channel, each channel behind its own breaker.

Rows of `alert_deliveries` go through the shared outbox worker (`store.outbox`), lane = the
channel: a slow or failing channel delays only its own queue; its breaker stops it from being
hammered (calls are refused while open and the delivery waits for the next try); each delivery is
retried with capped, jittered backoff up to `max_attempts`, then marked failed; one older than
`max_age_s` is dropped as expired rather than sent late.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from control_plane.alerting import repository as alert_repo
from control_plane.alerting.channels import AlertChannel, ChannelError
from control_plane.alerting.engine import Notification
from control_plane.metrics import Metrics
from control_plane.store.outbox import Finished, Item, OutboxError, OutboxPolicy, OutboxTable, OutboxWorker
from control_plane.store.tables import AlertDeliveryRow
from failover.breakers import BreakerBoard

log = logging.getLogger("drctl.alert_delivery")

DELIVERIES: OutboxTable[Notification] = OutboxTable(
    row=AlertDeliveryRow,
    lane="channel",
    done_at="sent_at",
    payload=lambda row: alert_repo.notification_from_json(row.payload),
    breaker_name=lambda channel: f"alert:{channel}",
    provider_id="provider_id",
    done_at_statuses=frozenset({"sent"}),
)


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    timeout_s: float = 5.0
    max_attempts: int = 6
    backoff_base_s: float = 2.0
    backoff_max_s: float = 300.0
    batch: int = 10  # leased together: keep it small so the lease outlives the batch's sends
    max_age_s: float = 3600.0  # older notifications are dropped, not sent late in a flood after an outage


class _ChannelSender:
    def __init__(self, channels: dict[str, AlertChannel]) -> None:
        self._channels = channels

    def send(self, item: Item[Notification]) -> Finished:
        try:
            provider_id = self._channels[item.lane].send(item.payload)
        except ChannelError as exc:
            raise OutboxError(str(exc)) from None  # channels keep secrets out of their messages
        return Finished("sent", provider_id=provider_id)


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
        self._channels = channels

        def counted(item: Item[Notification], status: str) -> None:
            metrics.alert_deliveries.labels(item.lane, status).inc()
            if status in ("retry", "failed", "expired"):
                log.warning("alert delivery %s over %s: %s", item.key[0], item.lane, status)

        self._worker = OutboxWorker(
            "alert-deliveries",
            sessions,
            DELIVERIES,
            _ChannelSender(channels),
            breakers,
            OutboxPolicy(
                # an SMTP send may take a timeout per step (connect, greeting, data): the worst case
                lease_s=policy.batch * policy.timeout_s * 3 + 5,
                batch=policy.batch,
                max_attempts=policy.max_attempts,
                backoff_base_s=policy.backoff_base_s,
                backoff_max_s=policy.backoff_max_s,
                max_age_s=policy.max_age_s,
                breaker_wait_s=breakers.policy.reset_timeout_s,
            ),
            clock,
            counted,
        )

    @property
    def channel_names(self) -> list[str]:
        return sorted(self._channels)

    def deliver_due(self, channel: str, leading: Callable[[], bool] = lambda: True) -> int:
        """Send `channel`'s due notifications; return how many were sent.

        `leading` is asked before each send: a process that lost the lead stops at once and leaves
        the rest of its leased batch to the next leader once the lease runs out.
        """
        return self._worker.run_once(channel, leading)

    def close(self) -> None:
        for ch in self._channels.values():
            try:
                ch.close()
            except Exception:
                log.exception("closing alert channel %s failed", ch.name)

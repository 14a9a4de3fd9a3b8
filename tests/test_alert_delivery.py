"""The alert-delivery outbox: retries with backoff, a breaker per channel, a final failure, on both DBs.

The channel is the real webhook channel posting to a real local receiver that can be made to fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session, sessionmaker

from control_plane.alerting import repository as alert_repo
from control_plane.alerting.channels import WebhookChannel
from control_plane.alerting.delivery import AlertDelivery, DeliveryPolicy
from control_plane.alerting.engine import Notification, NotificationKind
from control_plane.metrics import Metrics
from control_plane.store.db import make_engine, make_session_factory
from control_plane.store.migrate import upgrade
from control_plane.store.tables import AlertDeliveryRow
from failover.breakers import BreakerBoard, BreakerPolicy

from factories import Clock
from servers import WebhookReceiver, webhook_receiver

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
NOTE = Notification(
    NotificationKind.FIRING,
    "fp-1",
    {"alertname": "SiteDown", "site": "icheon"},
    {"summary": "DC icheon is down"},
    T0,
)


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url, pool_size=2)
    upgrade(engine)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as r:
        yield r


def delivery(sessions: sessionmaker[Session], url: str, clock: Clock, **policy: Any) -> AlertDelivery:
    breakers = BreakerBoard(BreakerPolicy(fail_max=3, reset_timeout_s=60.0, success_threshold=1))
    return AlertDelivery(
        sessions,
        {"webhook": WebhookChannel(url, timeout_s=2.0)},
        breakers,
        Metrics(CollectorRegistry()),
        DeliveryPolicy(timeout_s=2.0, backoff_base_s=2.0, backoff_max_s=60.0, **policy),
        clock,
    )


def queue(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        alert_repo.add_deliveries(s, NOTE, ["webhook"], T0)


def row(sessions: sessionmaker[Session]) -> AlertDeliveryRow:
    with sessions() as s:
        return s.query(AlertDeliveryRow).one()


def test_a_delivery_is_sent_once_with_the_provider_id(sessions: Any, receiver: WebhookReceiver) -> None:
    clock = Clock(T0)
    queue(sessions)
    d = delivery(sessions, receiver.url, clock)
    assert d.deliver_due("webhook") == 1
    assert d.deliver_due("webhook") == 0  # nothing owed twice
    r = row(sessions)
    assert (r.status, r.attempts, r.provider_id) == ("sent", 1, "HTTP 200")
    assert len(receiver.requests) == 1 and receiver.requests[0].body["drctl"]["fingerprint"] == "fp-1"


def test_a_failing_channel_is_retried_with_backoff_then_its_breaker_stops_the_calls(
    sessions: Any, receiver: WebhookReceiver
) -> None:
    clock = Clock(T0)
    queue(sessions)
    d = delivery(sessions, receiver.url, clock)
    receiver.fail_with(500)
    # given three failed attempts, each scheduled later than the last
    waits = []
    for _ in range(3):
        assert d.deliver_due("webhook") == 0
        r = row(sessions)
        waits.append((r.next_attempt_at - clock.now).total_seconds())
        assert (r.status, r.last_error) == ("pending", "webhook: HTTP 500")
        assert d.deliver_due("webhook") == 0  # not due again before its backoff
        clock.now = r.next_attempt_at
    assert row(sessions).attempts == 3 and len(receiver.requests) == 3
    assert waits[0] < waits[1] < waits[2], waits
    # when the breaker is open the channel is not called at all, and no attempt is spent
    receiver.fail_with(None)
    assert d.deliver_due("webhook") == 0
    assert len(receiver.requests) == 3 and row(sessions).attempts == 3
    assert row(sessions).next_attempt_at >= clock.now + timedelta(seconds=59)


def test_a_delivery_gives_up_after_its_last_attempt(sessions: Any, receiver: WebhookReceiver) -> None:
    clock = Clock(T0)
    queue(sessions)
    d = delivery(sessions, receiver.url, clock, max_attempts=2)
    receiver.fail_with(503)
    d.deliver_due("webhook")
    clock.now = row(sessions).next_attempt_at
    d.deliver_due("webhook")
    r = row(sessions)
    assert (r.status, r.attempts, r.last_error) == ("failed", 2, "webhook: HTTP 503")
    clock.now += timedelta(hours=1)
    assert d.deliver_due("webhook") == 0 and len(receiver.requests) == 2


def test_a_notification_older_than_the_max_age_is_dropped_not_sent_late(
    sessions: Any, receiver: WebhookReceiver
) -> None:
    clock = Clock(T0)
    queue(sessions)
    clock.now = T0 + timedelta(hours=2)  # e.g. the channel was down for two hours
    d = delivery(sessions, receiver.url, clock, max_age_s=3600)
    assert d.deliver_due("webhook") == 0
    assert row(sessions).status == "expired" and receiver.requests == []


def test_a_process_that_lost_the_lead_sends_nothing_more(sessions: Any, receiver: WebhookReceiver) -> None:
    clock = Clock(T0)
    queue(sessions)
    d = delivery(sessions, receiver.url, clock)
    assert d.deliver_due("webhook", leading=lambda: False) == 0
    assert receiver.requests == [] and row(sessions).status == "pending"

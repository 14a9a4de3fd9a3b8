"""One contract for every user of the shared outbox worker (store/outbox.py), run against each.

Users: the DC cancel outbox (a real simulator DC answers DELETE /orders/{id}) and alert delivery
(a real webhook receiver). Both stores. What every outbox promises: a due row is sent once and
ends; a failed send is retried later with capped backoff, keeping a safe error; an open breaker
spends no attempt and calls nothing; a row claimed by a worker that died is not sent again before
its lease ends, and is after it; two workers draining at once never send a row twice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from chaos.order_stream import OrderFactory
from control_plane.alerting import repository as alert_repo
from control_plane.alerting.channels import WebhookChannel
from control_plane.alerting.delivery import DELIVERIES, AlertDelivery, DeliveryPolicy, _ChannelSender
from control_plane.alerting.engine import Notification, NotificationKind
from control_plane.domain import OrderStatus
from control_plane.metrics import Metrics
from control_plane.orders import repository as order_repo
from control_plane.orders.cancels import CANCELS, CancelConfig, CancelOutbox, DcCancelSender
from control_plane.orders.schemas import OrderIn
from control_plane.store.db import make_engine, make_session_factory
from control_plane.store.outbox import OutboxPolicy, OutboxWorker
from control_plane.store.tables import AlertDeliveryRow, DcCancelRow
from control_plane.store.wms_client import HttpDcClient
from control_plane.world.state import SiteStateCache
from failover.breakers import BreakerBoard, BreakerPolicy
from failover.dispatch import cancel_breaker

from factories import Clock
from harness import prepare_database, start_simulator, write_test_world
from servers import webhook_receiver

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
SITE = "daejeon"


@dataclass
class Subject:
    """One outbox user, driven through its own entry point, observed at its remote end.

    `worker` builds another worker over the same table and remote (a second replica, or one that
    claims and dies) from the user's own sender.
    """

    sessions: sessionmaker[Session]
    clock: Clock
    board: BreakerBoard
    breaker: str
    run: Callable[[], int]  # one pass of the user's job
    enqueue: Callable[[], None]  # one row owed
    fail: Callable[[bool], None]  # make the remote fail (True) or answer (False)
    received: Callable[[], int]  # how many sends the remote has seen
    rows: Callable[[], list[Any]]
    worker: Callable[[], OutboxWorker[Any]]
    ended: str  # the status a delivered row ends with


@pytest.fixture(params=["dc_cancels", "alert_deliveries"])
def subject(request: pytest.FixtureRequest, db_url: str, tmp_path: Path) -> Iterator[Subject]:
    world, path = write_test_world(tmp_path / "world.yaml")
    prepare_database(db_url, world)
    clock = Clock(T0)
    board = BreakerBoard(BreakerPolicy(fail_max=3, reset_timeout_s=60.0, success_threshold=1))
    engine = make_engine(db_url, pool_size=8)
    request.addfinalizer(engine.dispose)
    sessions = make_session_factory(engine)
    if request.param == "dc_cancels":
        with start_simulator(path) as sim:
            yield _cancel_subject(sessions, clock, board, world, sim)
    else:
        with webhook_receiver() as receiver:
            yield _alert_subject(sessions, clock, board, receiver)


def _cancel_subject(sessions: Any, clock: Clock, board: BreakerBoard, world: Any, sim: Any) -> Subject:
    sites = SiteStateCache(sessions, board, 60.0, clock)
    client = HttpDcClient(0.5, 0.5, 1.0)
    config = CancelConfig(settle_s=5.0, timeout_s=1.0, backoff_base_s=2.0, backoff_max_s=60.0, batch=50)
    outbox = CancelOutbox(sessions, sites, client, board, config, clock)
    factory = OrderFactory(world, seed=5)
    wms = next(s.wms_url for s in world.sites if s.code == SITE)

    def enqueue() -> None:
        body = factory.order()
        req = OrderIn.model_validate(body).to_request(clock.now, 48)
        order_id = f"ord-{body['external_id']}"
        with sessions.begin() as s:
            order_repo.insert_order(s, order_id, req, OrderStatus.HELD, None, None, clock.now, None)
            order_repo.add_cancel(s, order_id, SITE, "left after a timeout", clock.now)
        # the DC holds a copy, as after a POST whose answer was lost
        payload = {"order_id": order_id, "channel": req.channel, "external_id": req.external_id,
                   "promised_by": req.promised_by.isoformat(), "ship_to": body["ship_to"],
                   "lines": [{"sku": li["sku"], "qty": li["qty"]} for li in body["lines"]]}  # fmt: skip
        httpx.post(f"{wms}/orders", json=payload, timeout=5, trust_env=False).raise_for_status()

    def fail(on: bool) -> None:
        if on:
            sim.set_fault(SITE, mode="error_rate", p=1.0)
        else:
            sim.clear_fault(SITE)

    def received() -> int:
        return sum(1 for e in sim.ledger(SITE, include_cancelled=True) if e["status"] == "cancelled")

    def rows() -> list[Any]:
        with sessions() as s:
            return list(s.scalars(select(DcCancelRow).order_by(DcCancelRow.order_id)))

    def second() -> OutboxWorker[Any]:
        policy = OutboxPolicy(
            lease_s=7.0, batch=50, max_attempts=None, backoff_base_s=2.0, backoff_max_s=60.0
        )
        sender = DcCancelSender(sessions, sites, HttpDcClient(0.5, 0.5, 1.0), 5.0, clock)
        return OutboxWorker("dc-cancels", sessions, CANCELS, sender, board, policy, clock)

    return Subject(
        sessions,
        clock,
        board,
        cancel_breaker(SITE),
        outbox.process_due,
        enqueue,
        fail,
        received,
        rows,
        second,
        "done",
    )


def _alert_subject(sessions: Any, clock: Clock, board: BreakerBoard, receiver: Any) -> Subject:
    metrics = Metrics(CollectorRegistry())
    policy = DeliveryPolicy(timeout_s=1.0, backoff_base_s=2.0, backoff_max_s=60.0, batch=50)
    channels = {"webhook": WebhookChannel(receiver.url, timeout_s=1.0)}
    delivery = AlertDelivery(sessions, channels, board, metrics, policy, clock)
    n = iter(range(10_000))

    def enqueue() -> None:
        note = Notification(
            NotificationKind.FIRING,
            f"fp-{next(n)}",
            {"alertname": "SiteDown", "site": SITE},
            {"summary": f"DC {SITE} is down"},
            clock.now,
        )
        with sessions.begin() as s:
            alert_repo.add_deliveries(s, note, ["webhook"], clock.now)

    def rows() -> list[Any]:
        with sessions() as s:
            return list(s.scalars(select(AlertDeliveryRow).order_by(AlertDeliveryRow.id)))

    def second() -> OutboxWorker[Any]:
        outbox = OutboxPolicy(lease_s=155.0, batch=50, max_attempts=6, backoff_base_s=2.0, backoff_max_s=60.0)
        sender = _ChannelSender({"webhook": WebhookChannel(receiver.url, timeout_s=1.0)})
        return OutboxWorker("alert-deliveries", sessions, DELIVERIES, sender, board, outbox, clock)

    return Subject(
        sessions,
        clock,
        board,
        "alert:webhook",
        lambda: delivery.deliver_due("webhook"),
        enqueue,
        lambda on: receiver.fail_with(500 if on else None),
        lambda: len(receiver.requests),
        rows,
        second,
        "sent",
    )


def test_a_due_row_is_sent_once_and_ends(subject: Subject) -> None:
    subject.enqueue()
    assert subject.run() == 1
    assert subject.run() == 0
    (row,) = subject.rows()
    assert (row.status, row.attempts) == (subject.ended, 1)
    assert subject.received() == 1


def test_a_failed_send_is_retried_later_with_growing_backoff_and_a_safe_error(subject: Subject) -> None:
    subject.enqueue()
    subject.fail(True)
    waits = []
    for attempt in (1, 2):
        assert subject.run() == 0
        (row,) = subject.rows()
        assert (row.status, row.attempts) == ("pending", attempt)
        assert row.last_error and "http://" not in row.last_error  # no URL (a webhook URL is a secret)
        waits.append((row.next_attempt_at - subject.clock.now).total_seconds())
        assert subject.run() == 0 and subject.rows()[0].attempts == attempt  # not due before its backoff
        subject.clock.now = row.next_attempt_at
    assert 0 < waits[0] < waits[1]
    # when the remote answers again, the row ends
    subject.fail(False)
    subject.run()
    assert subject.rows()[0].status == subject.ended


def test_an_open_breaker_spends_no_attempt_and_calls_nothing(subject: Subject) -> None:
    from control_plane.domain import BreakerState

    subject.enqueue()
    subject.board.get(subject.breaker).force(BreakerState.OPEN)
    before = subject.received()
    assert subject.run() == 0
    (row,) = subject.rows()
    assert (row.status, row.attempts) == ("pending", 0)
    assert row.next_attempt_at > subject.clock.now and subject.received() == before


def test_a_row_claimed_by_a_dead_worker_waits_for_its_lease_then_is_sent(subject: Subject) -> None:
    subject.enqueue()
    dead = subject.worker()
    assert len(dead.claim(None)) == 1  # claimed, never recorded: the process died mid-send
    assert subject.run() == 0 and subject.received() == 0
    subject.clock.now = subject.rows()[0].next_attempt_at + timedelta(seconds=1)
    assert subject.run() == 1
    assert subject.rows()[0].status == subject.ended


# SQLite has one writer: SKIP LOCKED claims are PostgreSQL's (SQLite's side is the lease test)
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_workers_draining_at_once_send_each_row_once(subject: Subject) -> None:
    for _ in range(40):
        subject.enqueue()
    workers = [subject.worker(), subject.worker()]
    ended: list[int] = []
    threads = [threading.Thread(target=lambda w=w: ended.append(w.run_once())) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(ended) == 40
    assert {r.status for r in subject.rows()} == {subject.ended}
    assert subject.received() == 40

"""Delay notices end to end in one process, on SQLite and PostgreSQL: which order changes write a
notice (in their own transaction), coalescing per customer and incident, suppression at send
time, the incident's counter and timeline, and falling back to SMS when e-mail fails.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from chaos.order_stream import OrderFactory
from control_plane.domain import OrderStatus
from control_plane.metrics import Metrics
from control_plane.notices.channels import LogNoticeChannel, NoticeChannel, SmtpNoticeChannel
from control_plane.notices.jobs import DeliveryConfig, NoticeDelivery
from control_plane.notices.letters import Envelope, Sent
from control_plane.notices.service import NoticePolicy, NoticeWriter
from control_plane.operations import repository as incident_repo
from control_plane.orders import repository as order_repo
from control_plane.orders.schemas import OrderIn
from control_plane.orders.slips import Slip, SlipReason
from control_plane.store.db import make_engine, make_session_factory
from control_plane.store.tables import IncidentEventRow, IncidentRow, NoticeLetterRow, NoticeRow, OrderRow
from failover.breakers import BreakerBoard, BreakerPolicy

from factories import Clock
from harness import prepare_database, write_test_world
from servers import closed_port

POLICY = NoticePolicy(
    slack=timedelta(hours=12), coalesce_s=30, timezone="Asia/Seoul", support_url="https://shop.example/help"
)


@dataclass
class World:
    sessions: sessionmaker[Session]
    clock: Clock
    factory: OrderFactory
    log_path: Path

    def order(self, order_id: str, customer: str, promised_in: timedelta, **contact: str) -> OrderRow:
        body = self.factory.order()
        body["customer"].update({"id": customer, "name": f"Kim {customer}", **contact})
        req = OrderIn.model_validate(body).to_request(self.clock.now, 48)
        req = replace(req, promised_by=self.clock.now + promised_in)
        with self.sessions.begin() as s:
            order_repo.insert_order(
                s,
                order_id,
                req,
                OrderStatus.ROUTED,
                "daejeon",
                self.clock.now,
                self.clock.now,
                self.clock.now,
            )
        with self.sessions() as s:
            row = order_repo.get_order(s, order_id)
            assert row is not None
            s.expunge(row)
            return row

    def incident(self, site: str) -> int:
        with self.sessions.begin() as s:
            return incident_repo.ensure_open_incident(
                s, "site_outage", site, "operator", f"{site} flooded", self.clock.now
            ).id

    def slip(self, rows: list[OrderRow], eta: timedelta | None, why: SlipReason = SlipReason.MOVED) -> None:
        """The orders moved (ETA `eta` from now) or held (None), as the order path would write it."""
        now = self.clock.now
        new_eta = None if eta is None else now + eta
        status = OrderStatus.HELD if eta is None else OrderStatus.ROUTED
        with self.sessions.begin() as s:
            ids = [r.id for r in rows]
            s.execute(update(OrderRow).where(OrderRow.id.in_(ids)).values(eta=new_eta, status=status.value))
            NoticeWriter(POLICY).record(s, [Slip.of(r, new_eta, "icheon", why) for r in rows], now)

    def delivery(
        self,
        channels: dict[str, NoticeChannel] | None = None,
        rate_per_s: dict[str, float] | None = None,
    ) -> NoticeDelivery:
        board = BreakerBoard(BreakerPolicy(fail_max=3, reset_timeout_s=30, success_threshold=1))
        log_channel = LogNoticeChannel(self.log_path)
        return NoticeDelivery(
            self.sessions,
            channels or {"email": log_channel, "sms": log_channel},
            board,
            Metrics(CollectorRegistry()),
            POLICY,
            DeliveryConfig(
                timeout_s=1.0,
                max_attempts=3,
                backoff_base_s=1,
                backoff_max_s=2,
                rate_per_s=rate_per_s,
            ),
            self.clock,
        )

    def logged(self) -> list[dict[str, str]]:
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines()]

    def notices(self) -> dict[str, tuple[str, str]]:
        with self.sessions() as s:
            return {r.order_id: (r.status, r.reason) for r in s.scalars(select(NoticeRow))}


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    test_world, _ = write_test_world(tmp_path / "world.yaml")
    prepare_database(db_url, test_world)
    engine = make_engine(db_url, pool_size=4)
    try:
        yield World(
            make_session_factory(engine),
            Clock(datetime(2026, 12, 2, 9, 0, tzinfo=UTC)),
            OrderFactory(test_world, seed=5),
            tmp_path / "n.jsonl",
        )
    finally:
        engine.dispose()


def test_three_late_orders_of_one_customer_get_one_message_and_on_time_ones_none(world: World) -> None:
    # given an incident at icheon, and a customer whose three orders it moved past their promise
    incident = world.incident("icheon")
    late = [world.order(f"late-{n}", "cust-1", timedelta(hours=20)) for n in range(3)]
    on_time = [world.order(f"ok-{n}", "cust-2", timedelta(days=5)) for n in range(2)]
    world.slip(late + on_time, eta=timedelta(hours=30))
    # when the letters are due (after the coalescing window) and delivered
    world.clock.now += timedelta(seconds=31)
    assert world.delivery().deliver_due() == 1
    # then one message went out, naming three orders, and the incident counts three notices
    sent = world.logged()
    assert len(sent) == 1 and sent[0]["to"] != late[0].customer_email, sent
    assert world.notices() == {
        r.id: ("sent", "moved: new ETA 10.0 h past the promise") for r in late
    }  # fmt: skip
    with world.sessions() as s:
        row = s.get(IncidentRow, incident)
        assert row is not None and row.notices == 3
        events = list(s.scalars(select(IncidentEventRow).where(IncidentEventRow.kind == "notices_sent")))
        assert [e.data for e in events] == [{"sent": {"email": 3}}]
        letter = s.scalars(select(NoticeLetterRow)).one()
        assert (letter.status, letter.incident_id, letter.sent_via) == ("sent", incident, "log")


def test_the_same_order_and_incident_gets_one_notice_however_often_it_slips(world: World) -> None:
    world.incident("icheon")
    row = world.order("o-1", "cust-1", timedelta(hours=20))
    world.slip([row], eta=timedelta(hours=30))
    world.slip([row], eta=timedelta(hours=31), why=SlipReason.REROUTED)
    with world.sessions() as s:
        assert len(list(s.scalars(select(NoticeRow)))) == 1


def test_a_held_order_is_late_only_once_its_promise_is_within_the_slack(world: World) -> None:
    world.incident("icheon")
    far = world.order("far", "cust-1", timedelta(days=3))
    near = world.order("near", "cust-2", timedelta(hours=6))
    world.slip([far, near], eta=None, why=SlipReason.HELD)
    assert set(world.notices()) == {"near"}
    # and the leader's sweep catches the far one once time has brought its promise within the slack
    world.clock.now += timedelta(days=2, hours=13)
    with world.sessions.begin() as s:
        s.execute(update(OrderRow).where(OrderRow.id == "far").values(status=OrderStatus.HELD.value))
        assert NoticeWriter(POLICY).sweep_held(s, world.clock.now) == 1
    assert set(world.notices()) == {"near", "far"}


def test_an_order_that_ships_before_send_time_is_suppressed_and_nothing_is_sent(world: World) -> None:
    world.incident("icheon")
    row = world.order("o-1", "cust-1", timedelta(hours=20))
    world.slip([row], eta=timedelta(hours=30))
    with world.sessions.begin() as s:
        s.execute(update(OrderRow).where(OrderRow.id == "o-1").values(status=OrderStatus.SHIPPED.value))
    world.clock.now += timedelta(seconds=31)
    world.delivery().deliver_due()
    assert world.logged() == []
    assert world.notices() == {"o-1": ("suppressed", "shipped before the notice was sent")}


def test_when_email_fails_a_customer_with_a_phone_is_told_by_sms_and_the_letter_says_so(world: World) -> None:
    world.incident("icheon")
    with_phone = world.order("p-1", "cust-1", timedelta(hours=20), phone="010-1234-5678")
    without = world.order("e-1", "cust-2", timedelta(hours=20))
    world.slip([with_phone, without], eta=timedelta(hours=30))
    world.clock.now += timedelta(seconds=31)
    dead_smtp = SmtpNoticeChannel("127.0.0.1", closed_port(), "shop@example.com", timeout_s=1.0)
    sms = LogNoticeChannel(world.log_path, medium="sms")
    world.delivery({"email": dead_smtp, "sms": sms}).deliver_due()
    # the customer with a phone got an SMS; the other one is retried later by e-mail
    assert [line["to"] for line in world.logged()] == ["+82******5678"]
    with world.sessions() as s:
        letters = {r.customer_id: r for r in s.scalars(select(NoticeLetterRow))}
    assert letters["cust-1"].status == "sent" and letters["cust-1"].sent_via == "log"
    assert (letters["cust-1"].detail or "").startswith("fallback from email: smtp:")
    assert (letters["cust-2"].status, letters["cust-2"].attempts) == ("pending", 1)
    assert world.notices()["e-1"][0] == "pending"


class _JoinsWhileSending:
    """A channel during whose send another late order of the same customer joins the letter."""

    name, medium = "log", "email"

    def __init__(self, world: World, inner: NoticeChannel, late: OrderRow) -> None:
        self._world, self._inner, self._late, self.sent = world, inner, late, 0

    def send(self, envelope: Envelope) -> Sent:
        if self.sent == 0:
            self._world.slip([self._late], eta=timedelta(hours=30))
        self.sent += 1
        return self._inner.send(envelope)

    def close(self) -> None:
        self._inner.close()


def test_an_order_that_joins_a_letter_while_it_is_sent_goes_out_next_on_its_own(world: World) -> None:
    world.incident("icheon")
    first = world.order("o-1", "cust-1", timedelta(hours=20))
    second = world.order("o-2", "cust-1", timedelta(hours=20))
    world.slip([first], eta=timedelta(hours=30))
    world.clock.now += timedelta(seconds=31)
    channel = _JoinsWhileSending(world, LogNoticeChannel(world.log_path), second)
    delivery = world.delivery({"email": channel, "sms": channel})
    # the letter's send was for o-1 only; o-2 joined meanwhile and is still owed
    delivery.deliver_due()
    assert world.notices()["o-1"][0] == "sent" and world.notices()["o-2"][0] == "pending"
    # the next pass sends it in a message of its own: two messages, each order named once
    delivery.deliver_due()
    assert {k: v[0] for k, v in world.notices().items()} == {"o-1": "sent", "o-2": "sent"}
    keys = [line["key"] for line in world.logged()]
    assert len(keys) == 2 and len(set(keys)) == 2


def test_a_held_order_that_was_told_and_then_ships_gets_a_follow_up_only_when_asked_for(world: World) -> None:
    world.incident("icheon")
    row = world.order("h-1", "cust-1", timedelta(hours=6))
    world.slip([row], eta=None, why=SlipReason.HELD)
    world.clock.now += timedelta(seconds=31)
    world.delivery().deliver_due()
    assert world.notices() == {"h-1": ("sent", "held: no DC can take it before its promise")}
    with world.sessions.begin() as s:
        s.execute(update(OrderRow).where(OrderRow.id == "h-1").values(status=OrderStatus.SHIPPED.value))
    for follow_up in (False, True):
        with world.sessions.begin() as s:
            shipped = s.get(OrderRow, "h-1")
            assert shipped is not None
            NoticeWriter(replace(POLICY, follow_up=follow_up)).shipped(s, shipped, world.clock.now)
        with world.sessions() as s:
            kinds = sorted(r.kind for r in s.scalars(select(NoticeRow)))
        assert kinds == (["back_on_track", "delay"] if follow_up else ["delay"])
    # and the follow-up goes out although the order has shipped (that is its point)
    world.delivery().deliver_due()
    with world.sessions() as s:
        assert {r.kind: r.status for r in s.scalars(select(NoticeRow))} == {
            "delay": "sent",
            "back_on_track": "sent",
        }


def test_a_channel_over_its_rate_limit_keeps_letters_waiting_without_spending_an_attempt(
    world: World,
) -> None:
    world.incident("icheon")
    rows = [world.order(f"o-{i}", f"cust-{i}", timedelta(hours=20)) for i in range(3)]
    world.slip(rows, eta=timedelta(hours=30))
    world.clock.now += timedelta(seconds=31)
    delivery = world.delivery(rate_per_s={"log": 1})
    assert delivery.deliver_due() == 1
    with world.sessions() as s:
        waiting = [r for r in s.scalars(select(NoticeLetterRow)) if r.status == "pending"]
    assert len(waiting) == 2
    assert all(
        r.attempts == 0 and r.next_attempt_at == world.clock.now + timedelta(seconds=1) for r in waiting
    )
    assert delivery.deliver_due() == 0  # not due yet
    world.clock.now += timedelta(seconds=1)
    assert delivery.deliver_due() == 1
    world.clock.now += timedelta(seconds=1)
    assert delivery.deliver_due() == 1
    assert sorted(v[0] for v in world.notices().values()) == ["sent"] * 3
    assert len(world.logged()) == 3

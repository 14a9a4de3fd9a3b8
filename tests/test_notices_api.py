"""`/v1/notices` over HTTP, on SQLite and PostgreSQL: the list and its filters, one notice, and the
preview an operator reads before customers do (rendered in the customer's language, escaped, written
nowhere); what a caller without a token or with too small a role gets.

The notices are written as the order path writes them (`NoticeWriter`) and sent or suppressed by the
delivery job (`NoticeDelivery` with a log channel), so every status the API shows was really reached.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker
from test_notices import POLICY

from chaos.order_stream import OrderFactory
from control_plane.app import create_app
from control_plane.domain import OrderStatus
from control_plane.metrics import Metrics
from control_plane.notices.channels import LogNoticeChannel, NoticeChannel, SmtpNoticeChannel
from control_plane.notices.jobs import DeliveryConfig, NoticeDelivery
from control_plane.notices.schemas import NoticeOut
from control_plane.notices.service import NoticeWriter
from control_plane.operations import repository as incident_repo
from control_plane.orders import repository as order_repo
from control_plane.orders.schemas import OrderIn
from control_plane.orders.slips import Slip, SlipReason
from control_plane.settings import Settings
from control_plane.store.db import make_engine, make_session_factory
from control_plane.store.tables import IncidentEventRow, IncidentRow, NoticeLetterRow, NoticeRow, OrderRow
from failover.breakers import BreakerBoard, BreakerPolicy

from conftest import PG_ADMIN
from factories import Clock
from harness import prepare_database, write_test_world
from servers import smtp_server

HANGUL = re.compile(r"[\uac00-\ud7a3]")
XSS_NAME = "<script>alert(1)</script>"
PROBLEM = "application/problem+json"


@dataclass
class Shop:
    """Orders and their notices in a store, written the way the order path and the sender write them."""

    sessions: sessionmaker[Session]
    clock: Clock
    factory: OrderFactory
    log_path: Path

    def order(self, order_id: str, customer: str, name: str, locale: str, promised_in: timedelta) -> OrderRow:
        """An order routed to daejeon, due at its ETA (now), promised `promised_in` from now."""
        body = self.factory.order(external_id=f"SHOP-{order_id.upper()}")
        body["customer"].update({"id": customer, "name": name, "locale": locale})
        req = OrderIn.model_validate(body).to_request(self.clock.now, 48)
        req = replace(req, promised_by=self.clock.now + promised_in)
        now = self.clock.now
        with self.sessions.begin() as s:
            order_repo.insert_order(s, order_id, req, OrderStatus.ROUTED, "daejeon", now, now, now)
        with self.sessions() as s:
            row = s.get(OrderRow, order_id)
            assert row is not None
            s.expunge(row)
            return row

    def incident(self, site: str) -> int:
        with self.sessions.begin() as s:
            return incident_repo.ensure_open_incident(
                s, "site_outage", site, "operator", f"{site} flooded", self.clock.now
            ).id

    def slip(self, rows: list[OrderRow], eta: timedelta | None, cause_site: str) -> None:
        """The orders were moved off `cause_site` to an ETA `eta` from now (None: held, on no site), as
        the order path writes it."""
        new_eta = None if eta is None else self.clock.now + eta
        why = SlipReason.MOVED if eta is not None else SlipReason.HELD
        moved = {"eta": new_eta} if eta is not None else {"eta": None, "site": None, "status": "held"}
        with self.sessions.begin() as s:
            s.execute(update(OrderRow).where(OrderRow.id.in_([r.id for r in rows])).values(**moved))
            slips = [Slip.of(r, new_eta, cause_site, why) for r in rows]
            NoticeWriter(POLICY).record(s, slips, self.clock.now)

    def ship(self, order_id: str) -> None:
        with self.sessions.begin() as s:
            s.execute(
                update(OrderRow).where(OrderRow.id == order_id).values(status=OrderStatus.SHIPPED.value)
            )

    def deliver_due(self, channels: dict[str, NoticeChannel] | None = None) -> int:
        log_channel = LogNoticeChannel(self.log_path)
        return NoticeDelivery(
            self.sessions,
            channels or {"email": log_channel, "sms": log_channel},
            BreakerBoard(BreakerPolicy(fail_max=3, reset_timeout_s=30, success_threshold=1)),
            Metrics(CollectorRegistry()),
            POLICY,
            DeliveryConfig(timeout_s=1.0, max_attempts=3, backoff_base_s=1, backoff_max_s=2),
            self.clock,
        ).deliver_due()

    def notice_ids(self) -> dict[str, int]:
        with self.sessions() as s:
            return {r.order_id: r.id for r in s.scalars(select(NoticeRow))}

    def written(self) -> dict[str, int]:
        """How many rows each table a notice (or its sending) writes holds."""
        with self.sessions() as s:
            return {
                t.__tablename__: int(s.scalar(select(func.count()).select_from(t)) or 0)
                for t in (NoticeRow, NoticeLetterRow, IncidentEventRow, IncidentRow, OrderRow)
            }


@dataclass
class Api:
    client: TestClient
    tokens: dict[str, str]
    shop: Shop
    incident: int  # icheon's open incident
    notice: dict[str, int]  # order id -> its notice's id

    def get(self, path: str, role: str | None = "viewer", **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return self.client.get(path, params=params, headers=headers)

    def listed(self, **params: Any) -> list[str]:
        """The order ids GET /v1/notices shows, in its order."""
        resp = self.get("/v1/notices", **params)
        assert resp.status_code == 200, resp.text
        return [n["order_id"] for n in resp.json()]

    def preview(self, order_id: str, role: str | None = "operator") -> httpx.Response:
        return self.get("/v1/notices/preview", role=role, order=order_id)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """As `db_url` (SQLite, then real PostgreSQL), but one store per module: every test here only
    reads, so they share one scenario instead of migrating and writing it again for each test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('notices-api') / 'drctl.db'}"
        return
    database = str(request.getfixturevalue("pg_server"))
    admin = PG_ADMIN.replace("dbname=postgres", f"dbname={database}")
    schema = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}?options=-csearch_path%3D{schema}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextlib.contextmanager
def open_store(url: str, tmp_path: Path) -> Iterator[tuple[Shop, TestClient, dict[str, str]]]:
    """A migrated store with the test world and a token per role, and the API on it (in process)."""
    world, _ = write_test_world(tmp_path / "world.yaml")
    tokens = prepare_database(url, world)
    engine = make_engine(url, pool_size=4)
    clock = Clock(datetime(2026, 12, 2, 9, 0, tzinfo=UTC))
    shop = Shop(make_session_factory(engine), clock, OrderFactory(world, seed=11), tmp_path / "sent.jsonl")
    try:
        settings = Settings(
            database_url=url,
            background_jobs=False,
            notice_support_url=POLICY.support_url,
            notice_log_path=str(tmp_path / "n.jsonl"),
        )
        with TestClient(create_app(settings, CollectorRegistry(), clock)) as client:
            yield shop, client, tokens
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def api(store_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """Given icheon's outage: an English customer's two orders moved off icheon and told (sent); a
    Korean customer's order moved off busan (no incident) that shipped before its notice went
    (suppressed) and a later one still waiting (pending); an order still on time (no notice)."""
    with open_store(store_url, tmp_path_factory.mktemp("notices-api")) as (shop, client, tokens):
        incident = shop.incident("icheon")
        en = [shop.order(f"en-{n}", "cust-en", "Alice Park", "en", timedelta(hours=20)) for n in (1, 2)]
        shop.slip(en, timedelta(hours=30), "icheon")
        ko_1 = shop.order("ko-1", "cust-ko", "김민준", "ko", timedelta(hours=20))
        shop.slip([ko_1], timedelta(hours=30), "busan")
        shop.order("ok-1", "cust-xss", XSS_NAME, "en", timedelta(days=5))
        shop.ship("ko-1")
        shop.clock.now += timedelta(seconds=31)
        shop.deliver_due()  # Alice is told; Kim's letter has nothing left to say once ko-1 shipped
        shop.clock.now += timedelta(minutes=5)
        ko_2 = shop.order("ko-2", "cust-ko", "김민준", "ko", timedelta(hours=20))
        shop.slip([ko_2], timedelta(hours=30), "busan")
        yield Api(client, tokens, shop, incident, shop.notice_ids())


def assert_problem(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM), resp.headers
    problem = resp.json()
    assert problem["status"] == status and problem["detail"], problem
    return dict(problem)


# --- GET /v1/notices ---------------------------------------------------------------------------------


def test_the_list_shows_every_notice_newest_first(api: Api) -> None:
    assert api.listed() == ["ko-2", "ko-1", "en-2", "en-1"]


def test_each_listed_notice_carries_the_fields_of_a_notice_with_its_letter(api: Api) -> None:
    # when a viewer lists the notices
    resp = api.get("/v1/notices")
    # then each has exactly NoticeOut's fields, and says how far it got
    notices = {n["order_id"]: n for n in resp.json()}
    assert all(set(n) == set(NoticeOut.model_fields) for n in notices.values()), notices
    sent = notices["en-1"]
    assert (sent["status"], sent["incident_id"], sent["channel"], sent["sent_via"], sent["locale"]) == (
        "sent",
        api.incident,
        "email",
        "log",
        "en",
    )
    assert sent["attempts"] == 1 and sent["provider_id"] and sent["sent_at"], sent
    assert sent["reason"] == "moved: new ETA 10.0 h past the promise"
    quiet = notices["ko-1"]
    assert (quiet["status"], quiet["reason"], quiet["incident_id"], quiet["sent_at"]) == (
        "suppressed",
        "shipped before the notice was sent",
        None,
        None,
    )
    waiting = notices["ko-2"]
    assert (waiting["status"], waiting["sent_via"], waiting["attempts"], waiting["locale"]) == (
        "pending",
        None,
        0,
        "ko",
    )


def test_filtering_by_order_shows_only_that_orders_notice(api: Api) -> None:
    assert api.listed(order="en-2") == ["en-2"]
    assert api.listed(order="never-placed") == []


def test_filtering_by_incident_shows_only_the_notices_of_that_incident(api: Api) -> None:
    assert api.listed(incident=api.incident) == ["en-2", "en-1"]
    assert api.listed(incident=api.incident + 100) == []


@pytest.mark.parametrize(
    ("status", "orders"),
    [("sent", ["en-2", "en-1"]), ("suppressed", ["ko-1"]), ("pending", ["ko-2"]), ("failed", [])],
)
def test_filtering_by_status_shows_only_notices_in_that_state(
    api: Api, status: str, orders: list[str]
) -> None:
    assert api.listed(status=status) == orders


def test_filters_combine_and_limit_keeps_the_newest(api: Api) -> None:
    assert api.listed(incident=api.incident, status="pending") == []
    assert api.listed(limit=1) == ["ko-2"]


@pytest.mark.parametrize(
    ("param", "value"), [("status", "bogus"), ("limit", "0"), ("limit", "1001"), ("incident", "0")]
)
def test_a_bad_filter_is_422_problem_naming_it(api: Api, param: str, value: str) -> None:
    problem = assert_problem(api.get("/v1/notices", **{param: value}), 422)
    assert [e["path"] for e in problem["errors"]] == [param], problem


def test_a_typod_filter_is_422_naming_it_rather_than_the_whole_list(api: Api) -> None:
    problem = assert_problem(api.get("/v1/notices", staus="sent"), 422)
    assert [e["path"] for e in problem["errors"]] == ["query.staus"], problem
    assert "staus" in problem["detail"]


# --- GET /v1/notices/{id} ----------------------------------------------------------------------------


def test_one_notice_is_shown_as_the_list_shows_it(api: Api) -> None:
    listed = {n["id"]: n for n in api.get("/v1/notices").json()}
    resp = api.get(f"/v1/notices/{api.notice['en-1']}")
    assert resp.status_code == 200, resp.text
    assert resp.json() == listed[api.notice["en-1"]]


def test_a_notice_id_that_is_not_a_number_is_422_problem(api: Api) -> None:
    problem = assert_problem(api.get("/v1/notices/abc"), 422)
    assert [e["path"] for e in problem["errors"]] == ["notice_id"], problem


def test_an_unknown_notice_is_404_problem(api: Api) -> None:
    unknown = max(api.notice.values()) + 1000
    problem = assert_problem(api.get(f"/v1/notices/{unknown}"), 404)
    assert str(unknown) in problem["detail"]


# --- GET /v1/notices/preview -------------------------------------------------------------------------


def test_the_preview_of_an_english_customers_late_order_is_in_english_and_names_the_order(api: Api) -> None:
    # when an operator previews what Alice would be sent about her late order
    resp = api.preview("en-1")
    # then it is her e-mail and SMS in English, naming the order number she knows
    assert resp.status_code == 200, resp.text
    p = resp.json()
    assert (p["order_id"], p["channel"], p["locale"], p["late"]) == ("en-1", "email", "en", True)
    email, sms = p["email"], p["sms"]
    assert email["subject"] == "Delivery delay: order SHOP-EN-1"
    assert email["text"].startswith("Hello Alice Park,") and "running later than we promised" in email["text"]
    assert "SHOP-EN-1" in email["text"] and "SHOP-EN-1" in email["html"] and "SHOP-EN-1" in sms["text"]
    assert '<html lang="en">' in email["html"]
    assert not any(HANGUL.search(t) for t in (email["subject"], email["text"], email["html"], sms["text"]))


def test_the_preview_of_a_korean_customers_order_is_in_korean(api: Api) -> None:
    resp = api.preview("ko-2")
    assert resp.status_code == 200, resp.text
    p = resp.json()
    assert (p["locale"], p["late"]) == ("ko", True)
    for text in (p["email"]["subject"], p["email"]["text"], p["email"]["html"], p["sms"]["text"]):
        assert HANGUL.search(text) and "SHOP-KO-2" in text, text
    assert "김민준" in p["email"]["text"]
    assert '<html lang="ko">' in p["email"]["html"]


def test_the_preview_sms_says_its_kind_and_its_size_as_carriers_count_it(api: Api) -> None:
    for order_id in ("en-1", "ko-2"):
        sms = api.preview(order_id).json()["sms"]
        size = len(sms["text"].encode("cp949"))  # 1 byte per ASCII character, 2 per Hangul syllable
        assert sms["size_bytes"] == size, sms
        assert sms["kind"] == ("sms" if size <= 90 else "lms"), sms


def test_the_preview_of_an_order_still_on_time_says_it_is_not_late(api: Api) -> None:
    resp = api.preview("ok-1")
    assert resp.status_code == 200, resp.text
    assert resp.json()["late"] is False


def test_the_preview_escapes_a_customer_name_in_the_html(api: Api) -> None:
    html = api.preview("ok-1").json()["email"]["html"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html


def test_the_preview_needs_the_operator_role(api: Api) -> None:
    problem = assert_problem(api.preview("en-1", role="viewer"), 403)
    assert "operator" in problem["detail"]
    assert api.preview("en-1", role="admin").status_code == 200


def test_the_preview_of_an_unknown_order_is_404_problem(api: Api) -> None:
    problem = assert_problem(api.preview("never-placed"), 404)
    assert "never-placed" in problem["detail"]


def test_a_preview_without_an_order_is_422_problem_naming_it(api: Api) -> None:
    problem = assert_problem(api.get("/v1/notices/preview", role="operator"), 422)
    assert [e["path"] for e in problem["errors"]] == ["order"], problem


def test_the_preview_writes_nothing(api: Api) -> None:
    before = api.shop.written()
    for order_id in ("en-1", "ko-2", "ok-1"):
        assert api.preview(order_id).status_code == 200
    assert api.shop.written() == before


# --- who may call ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/notices", "/v1/notices/1", "/v1/notices/preview?order=en-1"])
def test_every_notices_call_without_a_token_is_401_problem(api: Api, path: str) -> None:
    resp = api.get(path, role=None)
    assert_problem(resp, 401)
    assert resp.headers["www-authenticate"] == "Bearer"


# --- the preview and the message sent --------------------------------------------------------------


def test_the_preview_of_a_held_order_says_what_its_customer_was_told(db_url: str, tmp_path: Path) -> None:
    with open_store(db_url, tmp_path) as (shop, client, tokens), smtp_server() as sink:
        # given icheon's outage held Alice's order (no DC could take it) and she was e-mailed about it
        shop.incident("icheon")
        held = shop.order("held-1", "cust-en", "Alice Park", "en", timedelta(hours=6))
        shop.slip([held], None, "icheon")
        shop.clock.now += timedelta(seconds=31)
        smtp = SmtpNoticeChannel(sink.host, sink.port, "shop@example.com", timeout_s=2.0)
        shop.deliver_due({"email": smtp})
        (told,) = sink.wait_for(1)
        told_text = told.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        # when an operator previews what Alice receives about that order
        resp = client.get(
            "/v1/notices/preview", params={"order": "held-1"}, headers=bearer(tokens["operator"])
        )
        # then the preview says what her e-mail said: the cause is the fulfillment centre's outage
        assert resp.status_code == 200, resp.text
        preview_text = resp.json()["email"]["text"]
        assert "fulfillment centers" in told_text, told_text
        assert lines(preview_text) == lines(told_text)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def lines(text: str) -> list[str]:
    """The text's lines as a reader sees them (MIME transport may change line endings)."""
    return [line.rstrip() for line in text.strip().splitlines()]

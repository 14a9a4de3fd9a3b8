"""Delay notices through real parts: PostgreSQL, the simulator's DCs, `drctl serve`, a local SMTP
server (aiosmtpd) and a local moto server for SNS/SES, counted at the receivers.

- A failover of 500 in-flight orders, K of them made late by it (their promise fits Icheon but no
  backup): exactly the K orders' customers are told, one message per customer naming all of their
  late orders; nobody else hears anything.
- With SES down, a customer who asked for e-mail and has a phone number is told by SMS.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from test_operations_e2e import icheon_orders

from chaos.sim_process import wait_until
from control_plane.domain import GeoPoint, World
from control_plane.settings import Settings
from control_plane.store.tables import NoticeLetterRow, NoticeRow
from failover.eta import EtaModel

from harness import control_plane, engine_for, prepare_database, start_simulator, write_test_world
from servers import MotoServer, SmtpSink, closed_port, moto_server, smtp_server

pytestmark = pytest.mark.e2e
SENDER = "notices@shop.example"


@pytest.fixture
def moto() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with smtp_server() as sink:
        yield sink


def _promise_that_only_icheon_keeps(world: World, ship_to: dict[str, Any], now: datetime) -> str:
    settings = Settings()
    icheon = next(s for s in world.sites if s.code == "icheon")
    eta = EtaModel(settings.eta_base_hours, settings.eta_km_per_hour).eta(
        icheon, GeoPoint(ship_to["lat"], ship_to["lon"]), now
    )
    return (eta + timedelta(minutes=20)).isoformat()  # any backup is an hour or more farther


def _orders(world: World, n: int, late_customers: dict[str, dict[str, Any]], per_customer: int) -> list[dict]:
    """`n` orders for Icheon; the first `per_customer` x len(late_customers) have a tight promise."""
    now = datetime.now(UTC)
    bodies = icheon_orders(world, n, seed=41)
    late = [(cid, c) for cid, c in late_customers.items() for _ in range(per_customer)]
    for body, (cid, contact) in zip(bodies, late, strict=False):
        body["customer"] = {"id": cid, "name": f"Customer {cid}", "locale": "ko", **contact}
        body["placed_at"] = now.isoformat()
        body["promised_by"] = _promise_that_only_icheon_keeps(world, body["ship_to"], now)
    for body in bodies[len(late) :]:
        body["placed_at"] = now.isoformat()
        body["promised_by"] = (now + timedelta(days=7)).isoformat()
    return bodies


def _post_all(base: str, token: str, bodies: list[dict[str, Any]]) -> Counter[str]:
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        return Counter(str(http.post("/v1/orders", json=body).json().get("site")) for body in bodies)


def _env(moto: MotoServer, **extra: str) -> dict[str, str]:
    return {
        **moto.env(),
        "DRCTL_AWS_REGION": moto.region,
        "DRCTL_AWS_ENDPOINT_URL": moto.endpoint_url,
        "DRCTL_NOTICE_FROM": SENDER,
        "DRCTL_NOTICE_COALESCE_S": "2",
        "DRCTL_NOTICE_SMS_CHANNEL": "sns",
        "DRCTL_NOTICE_SUPPORT_URL": "https://shop.example/help",
        **extra,
    }


def test_a_failover_tells_exactly_the_customers_whose_orders_it_made_late_once_each(
    pg_url: str, tmp_path: Path, moto: MotoServer, smtp: SmtpSink
) -> None:
    world, path = write_test_world(tmp_path / "world.yaml")
    tokens = prepare_database(pg_url, world)
    # given 500 orders at Icheon; 20 customers (10 by e-mail, 10 by SMS) have 3 orders each whose
    # promise only Icheon can keep: K = 60 orders will be late once Icheon is failed over
    late_customers = {f"late-mail-{i}": {"email": f"mail{i}@example.com", "notify_via": "email"}
                      for i in range(10)}  # fmt: skip
    late_customers |= {
        f"late-sms-{i}": {"phone": f"010-5555-{i:04d}", "notify_via": "sms"} for i in range(10)
    }
    bodies = _orders(world, 500, late_customers, per_customer=3)
    numbers = {
        cid: [b["external_id"] for b in bodies if b["customer"]["id"] == cid] for cid in late_customers
    }
    env = _env(moto, DRCTL_NOTICE_EMAIL_CHANNEL="smtp", DRCTL_NOTICE_SMTP_HOST="127.0.0.1",
               DRCTL_NOTICE_SMTP_PORT=str(smtp.port))  # fmt: skip
    with start_simulator(path), control_plane(pg_url, tmp_path, env) as cp:
        assert _post_all(cp.base_url, tokens["ingest"], bodies) == Counter({"icheon": 500})
        # when an operator fails Icheon over
        answer = httpx.post(
            f"{cp.base_url}/v1/sites/icheon/failover",
            headers={"Authorization": f"Bearer {tokens['operator']}"},
            json={"reason": "flood at Icheon", "force": True},
            timeout=120,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["moved"]["live_left"] == 0
        incident_id = answer.json()["incident_id"]
        # then the receivers get one message per late customer, and no more after a while
        assert wait_until(lambda: len(smtp.received) >= 10 and len(moto.sns_sms_sent()) >= 10, 60, 0.5), (
            len(smtp.received), len(moto.sns_sms_sent()), cp.logs()[-3000:],
        )  # fmt: skip
        wait_until(lambda: False, 4, 0.5)  # a late duplicate would show up here
        mails, sms = smtp.messages, moto.sns_sms_sent()
        incident = httpx.get(
            f"{cp.base_url}/v1/incidents/{incident_id}",
            headers={"Authorization": f"Bearer {tokens['viewer']}"},
            timeout=10,
        ).json()
    assert len(mails) == 10 and len(sms) == 10
    by_address = {m["To"]: m for m in mails}
    assert sorted(by_address) == sorted(c["email"] for c in late_customers.values() if "email" in c)
    assert len({m["Message-ID"] for m in mails}) == 10
    for cid, contact in late_customers.items():
        if "email" not in contact:
            continue
        text = by_address[contact["email"]].get_body(("plain",)).get_content()
        assert all(n in text for n in numbers[cid]), (cid, text)
    phones = Counter(m["phone_number"] for m in sms)
    assert phones == Counter({f"+82105555{i:04d}": 1 for i in range(10)})
    # the store agrees: 60 notices sent, in 20 letters; none for the 440 orders still on time
    engine = engine_for(pg_url)
    with engine.connect() as c:
        notices = Counter(c.execute(select(NoticeRow.status)).scalars())
        letters = Counter(c.execute(select(NoticeLetterRow.status)).scalars())
    engine.dispose()
    assert notices == Counter({"sent": 60}) and letters == Counter({"sent": 20})
    assert incident["notices"] == 60
    told = [e["data"]["sent"] for e in incident["timeline"] if e["kind"] == "notices_sent"]
    assert told and sum(n for counts in told for n in counts.values()) == 60, incident


def test_with_ses_down_a_customer_with_a_phone_is_told_by_sms_instead(
    pg_url: str, tmp_path: Path, moto: MotoServer
) -> None:
    world, path = write_test_world(tmp_path / "world.yaml")
    tokens = prepare_database(pg_url, world)
    moto.verify_sender(SENDER)
    late_customers = {
        "mail-and-phone": {"email": "both@example.com", "phone": "010-7777-0001", "notify_via": "email"},
        "mail-only": {"email": "only@example.com", "notify_via": "email"},
    }
    bodies = _orders(world, 20, late_customers, per_customer=2)
    # SES is unreachable (a closed port); SNS works
    env = _env(moto, DRCTL_NOTICE_EMAIL_CHANNEL="ses",
               DRCTL_NOTICE_SES_ENDPOINT_URL=f"http://127.0.0.1:{closed_port()}")  # fmt: skip
    with start_simulator(path), control_plane(pg_url, tmp_path, env) as cp:
        assert _post_all(cp.base_url, tokens["ingest"], bodies) == Counter({"icheon": 20})
        answer = httpx.post(
            f"{cp.base_url}/v1/sites/icheon/failover",
            headers={"Authorization": f"Bearer {tokens['operator']}"},
            json={"reason": "flood at Icheon", "force": True},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        assert wait_until(lambda: len(moto.sns_sms_sent()) >= 1, 30, 0.5), cp.logs()[-3000:]
        viewer = {"Authorization": f"Bearer {tokens['viewer']}"}
        listed = httpx.get(f"{cp.base_url}/v1/notices", headers=viewer, timeout=10).json()
    sms = moto.sns_sms_sent()
    assert [m["phone_number"] for m in sms] == ["+821077770001"]
    assert moto.ses_raw_sent() == [] and moto.ses_sent() == []
    numbers = [b["external_id"] for b in bodies if b["customer"]["id"] == "mail-and-phone"]
    assert re.search(numbers[0], sms[0]["message"]), sms
    by_status = Counter((n["status"], n["sent_via"]) for n in listed)
    # the two orders of the customer with a phone went by SNS; the other customer's wait for SES
    assert by_status[("sent", "sns")] == 2 and by_status[("pending", None)] == 2, listed
    sent = [n for n in listed if n["status"] == "sent"]
    assert all((n["detail"] or "").startswith("fallback from email") for n in sent), sent

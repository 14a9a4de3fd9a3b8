"""`POST /v1/reconciliations` (and `drctl reconcile`): the store against every DC's real ledger.

Orders are taken by a real control plane (in-process app) and dispatched to real simulator DCs;
each difference is made the way it happens in production (a restore that lost rows, a DC that
dropped an order, a copy posted twice), found, repaired, and then found no more.
"""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, func, select
from test_dc_events import Api, get_order, make_api, other_site, place, stock, world_sim

from control_plane.orders import repository as repo
from control_plane.store.db import make_session_factory
from control_plane.store.tables import (
    AuditEventRow,
    DcCancelRow,
    NoticeRow,
    OrderLineRow,
    OrderRow,
    RouteAttemptRow,
)

from harness import engine_for

__all__ = ["make_api", "world_sim"]  # the fixtures, imported for pytest


@pytest.fixture
def api(make_api: Any) -> Api:
    return make_api(cancel_settle_s=0.0)  # type: ignore[no-any-return]


def reconcile(api: Api, **body: Any) -> httpx.Response:
    return api.client.post("/v1/reconciliations", json=body, headers=api.as_role("operator"))


def report(api: Api, **body: Any) -> dict[str, Any]:
    resp = reconcile(api, **body)
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def findings(answer: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {f["order_id"]: (f["kind"], f["action"]) for f in answer["findings"]}


def forget(api: Api, order_ids: list[str]) -> None:
    """What restoring a backup taken before these orders does: the store never had them (nor their
    reservations), while the DCs still hold them."""
    engine = engine_for(api.url)
    with make_session_factory(engine).begin() as s:
        for order_id in order_ids:
            row = repo.get_order(s, order_id)
            assert row is not None and row.site is not None
            repo.release(s, row.site, repo.order_lines(s, order_id))
            for table in (NoticeRow, DcCancelRow, RouteAttemptRow, OrderLineRow):
                s.execute(delete(table).where(table.order_id == order_id))
            s.execute(delete(OrderRow).where(OrderRow.id == order_id))
    engine.dispose()
    api.ctx.sites.refresh()


def dc(api: Api, site: str) -> httpx.Client:
    return httpx.Client(base_url=api.ctx.sites.site(site).wms_url, timeout=5, trust_env=False)


def dc_copy(api: Api, site: str, order_id: str) -> dict[str, Any] | None:
    with dc(api, site) as http:
        resp = http.get(f"/orders/{order_id}")
    return None if resp.status_code == 404 else resp.json()


def live_holders(api: Api, order_id: str) -> list[str]:
    return [s.code for s in api.world.sites if any(e["order_id"] == order_id for e in api.sim.ledger(s.code))]


def audit_count(api: Api) -> int:
    engine = engine_for(api.url)
    with engine.connect() as c:
        n = int(c.scalar(select(func.count()).select_from(AuditEventRow)) or 0)
    engine.dispose()
    return n


def test_a_store_and_ledgers_that_agree_report_nothing(api: Api) -> None:
    placed = [place(api)["id"] for _ in range(5)]
    answer = report(api)
    assert answer["clean"] is True and answer["findings"] == []
    assert answer["compared"] == 5 and answer["settling"] == 0
    assert sum(s["listed"] for s in answer["sites"]) == len(placed)
    assert set(answer["counts"].values()) == {0}


def test_orders_a_restore_lost_are_found_and_re_imported_as_they_were(api: Api) -> None:
    # given orders the DCs hold but the store lost (a restore of an older backup)
    orders = [place(api) for _ in range(6)]
    lost = [o["id"] for o in orders[:3]]
    before = {o["id"]: get_order(api, o["id"]) for o in orders[:3]}
    stock_before = {s.code: stock(api.url, s.code) for s in api.world.sites}
    forget(api, lost)
    # when reconciled: exactly those are reported, each to be re-imported from its DC
    answer = report(api)
    assert answer["clean"] is False
    assert findings(answer) == {oid: ("unknown_to_store", "import") for oid in lost}
    assert answer["counts"]["unknown_to_store"] == 3
    assert get_order_status(api, lost[0]) == 404  # a report changes nothing
    # and a repair re-imports them: same site, DC reference, customer, lines, total and reservation
    repaired = report(api, repair=True, reason="restored from the 02:00 backup")
    assert all(f["repaired"] for f in repaired["findings"]) and repaired["clean"] is True
    for order_id, was in before.items():
        now = get_order(api, order_id)
        for field in ("site", "dc_ref", "channel", "external_id", "customer_id", "ship_region", "status"):
            assert now[field] == was[field], field
        assert Decimal(now["total"]) == Decimal(was["total"])
        assert [(li["sku"], li["qty"], Decimal(li["unit_price"])) for li in now["lines"]] == [
            (li["sku"], li["qty"], Decimal(li["unit_price"])) for li in was["lines"]
        ]
        assert now["placed_at"] == was["placed_at"] and now["promised_by"] == was["promised_by"]
        assert now["attempts"][-1]["outcome"] == "reconciled"
        assert "re-imported" in now["attempts"][-1]["reason"]
    assert {s.code: stock(api.url, s.code) for s in api.world.sites} == stock_before
    # then the store and the ledgers agree, and the repair is audited with its reason
    assert report(api)["findings"] == []
    engine = engine_for(api.url)
    with engine.connect() as c:
        row = c.execute(select(AuditEventRow).where(AuditEventRow.action == "orders.reconcile")).one()
    engine.dispose()
    assert row.reason == "restored from the 02:00 backup" and row.actor
    assert set(row.after["repaired"]) == set(lost)


def get_order_status(api: Api, order_id: str) -> int:
    return api.client.get(f"/v1/orders/{order_id}", headers=api.as_role("viewer")).status_code


def test_an_order_its_dc_dropped_is_dispatched_again(api: Api) -> None:
    order = place(api)
    site = order["site"]
    with dc(api, site) as http:  # the DC lost it (its own restore, or a cancel nobody asked for)
        assert http.delete(f"/orders/{order['id']}").status_code == 200
    answer = report(api)
    assert findings(answer) == {order["id"]: ("missing_at_dc", "redispatch")}
    repaired = report(api, repair=True, reason="icheon restored its WMS")
    assert repaired["findings"][0]["outcome"] == f"dispatched again to {site}"
    assert get_order(api, order["id"])["status"] == "routed"
    assert api.ctx.pipeline.redispatch_due() == 1
    assert live_holders(api, order["id"]) == [site]
    assert get_order(api, order["id"])["status"] == "accepted"
    assert report(api)["clean"] is True


def test_a_copy_at_a_second_dc_is_cancelled_there(api: Api) -> None:
    order = place(api)
    site, other = order["site"], other_site(api, order["site"])
    copy = dc_copy(api, site, order["id"])
    assert copy is not None
    with dc(api, other) as http:  # a duplicate post nobody recorded
        assert http.post("/orders", json={"order_id": order["id"], **copy["payload"]}).status_code == 201
    answer = report(api)
    assert findings(answer) == {order["id"]: ("at_several_dcs", "cancel")}
    assert answer["findings"][0]["cancel_at"] == [other]
    report(api, repair=True, reason="duplicate post")
    assert api.ctx.cancels.process_due() == 1
    assert live_holders(api, order["id"]) == [site]
    assert report(api)["clean"] is True


def test_the_store_follows_the_only_dc_that_holds_an_order(api: Api) -> None:
    order = place(api)
    site, other = order["site"], other_site(api, order["site"])
    copy = dc_copy(api, site, order["id"])
    assert copy is not None
    with dc(api, other) as http:
        assert http.post("/orders", json={"order_id": order["id"], **copy["payload"]}).status_code == 201
    with dc(api, site) as http:
        assert http.delete(f"/orders/{order['id']}").status_code == 200
    at_site, at_other = stock(api.url, site), stock(api.url, other)
    answer = report(api)
    assert findings(answer) == {order["id"]: ("elsewhere", "adopt")}
    report(api, repair=True, reason="moved by hand at the DCs")
    shown = get_order(api, order["id"])
    assert (shown["site"], shown["status"]) == (other, "accepted")
    assert shown["dc_ref"] == dc_copy(api, other, order["id"])["dc_ref"]  # type: ignore[index]
    for line in order["lines"]:  # the reservation moved with it
        assert stock(api.url, site)[line["sku"]][1] == at_site[line["sku"]][1] - line["qty"]
        assert stock(api.url, other)[line["sku"]][1] == at_other[line["sku"]][1] + line["qty"]
    assert report(api)["clean"] is True


def test_a_shipment_the_store_missed_is_recorded(api: Api) -> None:
    order = place(api)
    site = order["site"]
    resp = httpx.post(f"{api.sim.admin_url}/_sim/targets/{site}/orders/{order['id']}/ship", timeout=5)
    assert resp.status_code == 200, resp.text  # no webhook configured: drctl is not told
    answer = report(api)
    assert findings(answer) == {order["id"]: ("shipped_not_recorded", "record_shipment")}
    report(api, repair=True, reason="webhooks were off")
    assert get_order(api, order["id"])["status"] == "shipped"
    assert report(api)["clean"] is True


def test_a_repair_with_a_ledger_unreadable_is_refused_and_writes_nothing(api: Api) -> None:
    orders = [place(api) for _ in range(4)]
    forget(api, [orders[0]["id"]])
    down = next(s.code for s in api.world.sites if s.code != orders[0]["site"])
    api.sim.set_fault(down, "down")
    audits = audit_count(api)
    answer = report(api)
    assert answer["clean"] is False
    assert [s["site"] for s in answer["sites"] if s["error"]] == [down]
    resp = reconcile(api, repair=True, reason="try anyway")
    assert resp.status_code == 409, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["rule"] == "ledgers_unreadable" and down in resp.json()["detail"]
    assert get_order_status(api, orders[0]["id"]) == 404 and audit_count(api) == audits
    api.sim.clear_fault(down)


BAD_BODIES = [
    {"repiar": True},  # a typo must not run the real thing, nor fall back to a report
    {"repair": True},  # no reason
    {"repair": "yes", "reason": "because"},
    {"since": "9999-12-31T00:00:00Z"},
    {"since": "0001-01-01T00:00:00Z"},
    {"since": "2026-12-01T00:00:00"},  # no offset: which night?
    {"repair": True, "reason": "a\x00b"},
]


def test_bad_input_is_422_and_writes_nothing(api: Api) -> None:
    forget(api, [place(api)["id"]])
    audits = audit_count(api)
    for body in BAD_BODIES:
        resp = reconcile(api, **body)
        assert resp.status_code == 422, (body, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
    assert audit_count(api) == audits
    assert len(report(api)["findings"]) == 1  # still there: nothing was repaired


def test_a_viewer_cannot_reconcile(api: Api) -> None:
    resp = api.client.post("/v1/reconciliations", json={}, headers=api.as_role("viewer"))
    assert resp.status_code == 403


def test_since_reads_the_recent_part_of_each_ledger_and_finds_the_same(api: Api) -> None:
    lost = place(api)["id"]
    place(api)
    forget(api, [lost])
    since = get_order(api, place(api)["id"])["created_at"]
    # a DC's clock may lag ours: its listing starts a margin before `since`, so a lost order
    # received just before is still found
    recent = report(api, since=since)
    assert findings(recent) == {lost: ("unknown_to_store", "import")}
    assert recent["since"] is not None and recent["compared"] == 3


def test_a_lost_order_its_channel_posted_again_is_a_duplicate_and_cancelled_at_its_dc(api: Api) -> None:
    # given an order the store lost, which its channel then posted again (a retry after the restore)
    body = api.factory.order()
    first = api.client.post("/v1/orders", json=body, headers=api.as_role("ingest")).json()
    forget(api, [first["id"]])
    second = api.client.post("/v1/orders", json=body, headers=api.as_role("ingest"))
    assert second.status_code == 201 and second.json()["id"] != first["id"]
    # when reconciled and repaired: the lost copy is not re-imported beside the new one
    answer = report(api, repair=True, reason="restored")
    (finding,) = answer["findings"]
    assert (finding["order_id"], finding["kind"]) == (first["id"], "unknown_to_store")
    assert finding["repaired"] and f"duplicate of order {second.json()['id']}" in finding["outcome"]
    # then the channel's order is at one DC once, and the lost copy is cancelled where it was
    assert live_holders(api, first["id"]) == []
    assert len(live_holders(api, second.json()["id"])) == 1
    assert get_order_status(api, first["id"]) == 404
    assert report(api)["clean"] is True


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--repiar"], "No such option"),
        (["--repair"], "--repair needs --reason"),
        (["--since", "yesterday"], "--since must be"),
        (["--since", "9999d"], "--since must be"),
        (["--since", "2026-12-01T03:00"], "--since must be"),
    ],
)
def test_cli_bad_input_exits_2_without_calling_the_api(args: list[str], says: str) -> None:
    # the URL answers nothing: had the command called it, it would exit 1 (unreachable)
    env = {**os.environ, "DRCTL_URL": "http://127.0.0.1:9", "DRCTL_TOKEN": "x" * 32}
    done = subprocess.run(
        [sys.executable, "-m", "control_plane", "reconcile", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert says in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr

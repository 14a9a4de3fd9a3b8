"""`POST /v1/orders/{id}/cancel`: cancel at the DC (the outbox when it does not answer), release the
stock, 409 once shipped. Real control plane (in-process app), real simulator DCs, both databases."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from test_dc_events import Api, place

from chaos.order_stream import OrderFactory
from control_plane.app import create_app
from control_plane.domain import BreakerState
from control_plane.orders.signatures import SIGNATURE_HEADER, sign, site_event_secret
from control_plane.settings import Settings
from control_plane.store.tables import AuditEventRow, DcCancelRow, OrderRow, RouteAttemptRow, StockRow
from failover.dispatch import cancel_breaker

from harness import engine_for, prepare_database, start_simulator, write_test_world

MASTER = "test-master-secret-for-cancels"


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> Iterator[Api]:
    world, path = write_test_world(tmp_path / "world.yaml")
    sim = start_simulator(path)
    try:
        tokens = prepare_database(db_url, world)
        settings = Settings(
            database_url=db_url,
            background_jobs=False,
            dc_event_secret=MASTER,
            dc_connect_timeout_s=0.5,
            dc_read_timeout_s=0.5,
            dc_cancel_timeout_s=0.5,
            cancel_settle_s=0.0,
        )
        app = create_app(settings)
        with TestClient(app) as client:
            yield Api(client, app, tokens, world, sim, db_url, OrderFactory(world, seed=3))
    finally:
        sim.stop()


def cancel(api: Api, order_id: str, role: str = "ingest", **body: Any) -> httpx.Response:
    return api.client.post(
        f"/v1/orders/{order_id}/cancel", json=body or {"reason": "customer asked"}, headers=api.as_role(role)
    )


def outcomes(order: dict[str, Any]) -> list[str]:
    return [a["outcome"] for a in order["attempts"]]


def reserved(url: str, site: str) -> dict[str, tuple[int, int]]:
    engine = engine_for(url)
    with engine.connect() as c:
        cols = select(StockRow.sku, StockRow.on_hand, StockRow.reserved).where(StockRow.site == site)
        found = {sku: (on_hand, held) for sku, on_hand, held in c.execute(cols)}
    engine.dispose()
    return found


def qty_per_sku(order: dict[str, Any]) -> dict[str, int]:
    qty: dict[str, int] = {}
    for line in order["lines"]:
        qty[line["sku"]] = qty.get(line["sku"], 0) + line["qty"]
    return qty


def dc_status(api: Api, site: str, order_id: str) -> str | None:
    entries = api.sim.ledger(site, include_cancelled=True)
    return next((e["status"] for e in entries if e["order_id"] == order_id), None)


def cancel_row(url: str, order_id: str, site: str) -> str | None:
    engine = engine_for(url)
    with engine.connect() as c:
        status = c.scalar(
            select(DcCancelRow.status).where(DcCancelRow.order_id == order_id, DcCancelRow.site == site)
        )
    engine.dispose()
    return status


def store_snapshot(url: str) -> tuple[Any, ...]:
    engine = engine_for(url)
    with engine.connect() as c:
        orders = sorted(c.execute(select(OrderRow.id, OrderRow.status, OrderRow.site, OrderRow.cancelled_at)))
        counts = tuple(
            c.scalar(select(func.count()).select_from(t))
            for t in (RouteAttemptRow, AuditEventRow, DcCancelRow)
        )
        stock = sorted(c.execute(select(StockRow.site, StockRow.sku, StockRow.on_hand, StockRow.reserved)))
    engine.dispose()
    return tuple(orders), counts, tuple(stock)


def sim_admin(api: Api, path: str) -> httpx.Response:
    with httpx.Client(base_url=api.sim.admin_url, timeout=10, trust_env=False) as http:
        return http.post(path)


def test_cancel_releases_the_stock_and_the_dc_ledger_shows_it_cancelled(api: Api) -> None:
    # given an order accepted by a DC
    order = place(api)
    site, before = order["site"], reserved(api.url, order["site"])
    # when its channel cancels it
    resp = cancel(api, order["id"], reason="customer changed their mind")
    # then the answer is the order, cancelled, with the cancel and the DC's confirmation in its timeline
    assert resp.status_code == 200, resp.text
    shown = resp.json()
    assert shown["id"] == order["id"] and shown["status"] == "cancelled"
    assert outcomes(shown)[-2:] == ["cancelled", "cancel_confirmed"]
    assert "customer changed their mind" in shown["attempts"][-2]["reason"]
    # and its units are free again, the DC's ledger shows it cancelled, nothing is owed to the DC
    after = reserved(api.url, site)
    for sku, qty in qty_per_sku(order).items():
        assert after[sku] == (before[sku][0], before[sku][1] - qty)
    assert dc_status(api, site, order["id"]) == "cancelled"
    assert cancel_row(api.url, order["id"], site) == "done"
    # and the cancel is audited
    engine = engine_for(api.url)
    with engine.connect() as c:
        audit = c.execute(select(AuditEventRow).where(AuditEventRow.action == "order.cancel")).one()
    engine.dispose()
    assert audit.subject == f"order:{order['id']}" and audit.reason == "customer changed their mind"
    assert audit.before == {"status": "accepted", "site": site}
    assert audit.actor.startswith("test-ingest-")


def test_cancelling_a_cancelled_order_is_200_and_changes_nothing(api: Api) -> None:
    order = place(api)
    assert cancel(api, order["id"]).status_code == 200
    before = store_snapshot(api.url)
    again = cancel(api, order["id"], role="operator", reason="once more")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    assert store_snapshot(api.url) == before


def test_a_cancel_after_shipment_is_409_and_changes_nothing(api: Api) -> None:
    # given an order its DC shipped and told drctl about
    order = place(api)
    body = json.dumps({"order_id": order["id"], "event": "shipped", "at": datetime.now(UTC).isoformat()})
    signature = sign(body.encode(), site_event_secret(MASTER, order["site"]))
    shipped = api.client.post(
        f"/v1/sites/{order['site']}/events", content=body, headers={SIGNATURE_HEADER: signature}
    )
    assert shipped.json()["status"] == "shipped"
    before = store_snapshot(api.url)
    # when the channel asks to cancel it
    resp = cancel(api, order["id"])
    # then it is refused as a conflict, and nothing changes
    assert resp.status_code == 409
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["rule"] == "already_shipped" and "already shipped" in resp.json()["detail"]
    assert store_snapshot(api.url) == before


def test_a_cancel_the_dc_answers_with_already_shipped_is_409_and_the_order_is_shipped(api: Api) -> None:
    # given an order its DC shipped without telling drctl (no webhooks)
    order = place(api)
    site, before = order["site"], reserved(api.url, order["site"])
    assert sim_admin(api, f"/_sim/targets/{site}/orders/{order['id']}/ship").is_success
    # when the channel cancels it
    resp = cancel(api, order["id"])
    # then the DC's 409 is ours: the order is shipped and its units left the DC
    assert resp.status_code == 409
    assert resp.json()["rule"] == "already_shipped"
    shown = api.client.get(f"/v1/orders/{order['id']}", headers=api.as_role("viewer")).json()
    assert shown["status"] == "shipped" and shown["site"] == site
    assert outcomes(shown)[-2:] == ["cancelled", "shipped"]
    after = reserved(api.url, site)
    for sku, qty in qty_per_sku(order).items():
        assert after[sku] == (before[sku][0] - qty, before[sku][1] - qty)
    assert dc_status(api, site, order["id"]) == "shipped"
    assert cancel_row(api.url, order["id"], site) == "done"


def test_a_cancel_the_dc_does_not_answer_goes_through_the_outbox(api: Api) -> None:
    # given an accepted order whose DC then goes down
    order = place(api)
    site, before = order["site"], reserved(api.url, order["site"])
    api.sim.set_fault(site, "down")
    # when the channel cancels it
    resp = cancel(api, order["id"])
    # then it is cancelled here at once, its stock released, and the DC is owed the cancel
    assert resp.status_code == 200 and resp.json()["status"] == "cancelled"
    assert outcomes(resp.json())[-2:] == ["cancelled", "cancel_queued"]
    after = reserved(api.url, site)
    for sku, qty in qty_per_sku(order).items():
        assert after[sku][1] == before[sku][1] - qty
    assert cancel_row(api.url, order["id"], site) == "pending"
    assert dc_status(api, site, order["id"]) == "accepted"
    # and once the DC is back, the cancel outbox cancels it there
    api.sim.clear_fault(site)
    assert api.ctx.cancels.process_due() == 1
    assert dc_status(api, site, order["id"]) == "cancelled"
    assert cancel_row(api.url, order["id"], site) == "done"


def test_a_cancel_with_the_dc_cancel_breaker_open_is_queued_without_calling_the_dc(api: Api) -> None:
    order = place(api)
    site = order["site"]
    api.ctx.board.get(cancel_breaker(site)).force(BreakerState.OPEN)
    deletes_before = api.sim.stats(site)["requests"].get("DELETE /orders/{order_id}", 0)
    resp = cancel(api, order["id"])
    assert resp.status_code == 200 and resp.json()["status"] == "cancelled"
    assert outcomes(resp.json())[-1] == "cancel_queued"
    assert "breaker open" in resp.json()["attempts"][-1]["reason"]
    assert api.sim.stats(site)["requests"].get("DELETE /orders/{order_id}", 0) == deletes_before
    assert cancel_row(api.url, order["id"], site) == "pending"
    # and once the breaker closes, the cancel outbox (behind the same breaker) delivers it
    api.ctx.board.get(cancel_breaker(site)).force(BreakerState.CLOSED)
    assert api.ctx.cancels.process_due() == 1
    assert api.sim.stats(site)["requests"]["DELETE /orders/{order_id}"] == deletes_before + 1
    assert dc_status(api, site, order["id"]) == "cancelled"


def test_a_cancelled_held_order_is_never_routed_again(api: Api) -> None:
    # given an order no DC could take (every DC down): held
    for site in api.world.sites:
        api.sim.set_fault(site.code, "down")
    resp = api.client.post("/v1/orders", json=api.factory.order(), headers=api.as_role("ingest"))
    assert resp.status_code == 202
    order = resp.json()
    # when it is cancelled, and the DCs come back and the retry loop runs
    cancelled = cancel(api, order["id"], role="operator")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    for site in api.world.sites:
        api.sim.clear_fault(site.code)
    api.ctx.pipeline.redispatch_due()
    # then no DC has it and it stays cancelled
    assert all(dc_status(api, s.code, order["id"]) is None for s in api.world.sites)
    shown = api.client.get(f"/v1/orders/{order['id']}", headers=api.as_role("viewer")).json()
    assert shown["status"] == "cancelled"


def test_cancel_needs_an_ingest_or_operator_token(api: Api) -> None:
    order = place(api)
    before = store_snapshot(api.url)
    none = api.client.post(f"/v1/orders/{order['id']}/cancel", json={"reason": "x"})
    viewer = cancel(api, order["id"], role="viewer")
    assert (none.status_code, viewer.status_code) == (401, 403)
    assert store_snapshot(api.url) == before
    assert cancel(api, order["id"], role="operator").status_code == 200


@pytest.mark.parametrize(
    ("body", "named"), [({"reason": "x", "force": True}, "force"), ({}, "reason"), ({"reason": ""}, "reason")]
)
def test_a_bad_cancel_body_is_422_naming_the_field(api: Api, body: dict[str, Any], named: str) -> None:
    order = place(api)
    before = store_snapshot(api.url)
    resp = api.client.post(f"/v1/orders/{order['id']}/cancel", json=body, headers=api.as_role("ingest"))
    assert resp.status_code == 422
    assert named in [e["path"] for e in resp.json()["errors"]]
    assert store_snapshot(api.url) == before


def test_cancelling_an_unknown_order_is_404(api: Api) -> None:
    resp = cancel(api, "no-such-order")
    assert resp.status_code == 404
    assert resp.headers["content-type"].startswith("application/problem+json")


def test_a_repeated_idempotency_key_replays_the_first_answer(api: Api) -> None:
    order = place(api)
    headers = {**api.as_role("ingest"), "Idempotency-Key": "cancel-1"}
    first = api.client.post(f"/v1/orders/{order['id']}/cancel", json={"reason": "r"}, headers=headers)
    again = api.client.post(f"/v1/orders/{order['id']}/cancel", json={"reason": "r"}, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.headers.get("idempotent-replay") == "true"
    assert again.json() == first.json()

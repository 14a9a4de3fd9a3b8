"""DC events (DESIGN §4): signed `shipped` / `cancelled_by_dc` webhooks, and polling DCs that cannot call out.

Orders are taken by a real control plane (in-process app) and dispatched to real simulator DCs; the
webhook tests sign their own requests, the end-to-end tests let the simulator send them.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from chaos.order_stream import OrderFactory
from chaos.ports import free_port
from chaos.sim_process import SimProcess, wait_until
from control_plane.app import create_app
from control_plane.context import AppContext
from control_plane.domain import World
from control_plane.orders import repository as repo
from control_plane.orders.lifecycle import build_lifecycle
from control_plane.orders.lifecycle_jobs import DcPoller, PollConfig, build_poller
from control_plane.orders.signatures import SIGNATURE_HEADER, sign, site_event_secret
from control_plane.settings import Settings
from control_plane.store.db import make_session_factory
from control_plane.store.tables import DcCancelRow, OrderRow, RouteAttemptRow, StockRow

from harness import engine_for, prepare_database, start_simulator, write_test_world

MASTER = "test-master-secret-for-dc-events"
FAST = {
    "dc_connect_timeout_s": 0.5,
    "dc_read_timeout_s": 0.5,
    "dc_cancel_timeout_s": 0.5,
    "breaker_reset_timeout_s": 1.0,
}


@dataclass
class Api:
    client: TestClient
    app: FastAPI
    tokens: dict[str, str]
    world: World
    sim: SimProcess
    url: str
    factory: OrderFactory

    @property
    def ctx(self) -> AppContext:
        return self.app.state.ctx  # type: ignore[no-any-return]

    def as_role(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def build_app(db_url: str, **settings: Any) -> FastAPI:
    """The control plane in-process, without background jobs (tests run them by hand)."""
    return create_app(Settings(database_url=db_url, background_jobs=False, **{**FAST, **settings}))


@pytest.fixture
def world_sim(tmp_path: Path) -> Iterator[tuple[World, SimProcess]]:
    world, path = write_test_world(tmp_path / "world.yaml")
    sim = start_simulator(path)
    yield world, sim
    sim.stop()


@pytest.fixture
def make_api(db_url: str, world_sim: tuple[World, SimProcess]) -> Iterator[Any]:
    world, sim = world_sim
    tokens = prepare_database(db_url, world)
    clients: list[TestClient] = []

    def make(**settings: Any) -> Api:
        app = build_app(db_url, **{"dc_event_secret": MASTER, **settings})
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return Api(client, app, tokens, world, sim, db_url, OrderFactory(world, seed=len(clients)))

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def api(make_api: Any) -> Api:
    return make_api()  # type: ignore[no-any-return]


def place(api: Api) -> dict[str, Any]:
    resp = api.client.post("/v1/orders", json=api.factory.order(), headers=api.as_role("ingest"))
    assert resp.status_code == 201, resp.text
    order = resp.json()
    assert order["status"] == "accepted"
    return order  # type: ignore[no-any-return]


def event_body(order_id: str, event: str = "shipped", at: datetime | None = None, **extra: Any) -> bytes:
    at = at or datetime.now(UTC)
    return json.dumps({"order_id": order_id, "event": event, "at": at.isoformat(), **extra}).encode()


def post_event(
    client: TestClient | httpx.Client, site: str, body: bytes, secret: str | None = None
) -> httpx.Response:
    secret = site_event_secret(MASTER, site) if secret is None else secret
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, secret)}
    return client.post(f"/v1/sites/{site}/events", content=body, headers=headers)


def get_order(api: Api, order_id: str) -> dict[str, Any]:
    resp = api.client.get(f"/v1/orders/{order_id}", headers=api.as_role("viewer"))
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def outcomes(order: dict[str, Any]) -> list[str]:
    return [a["outcome"] for a in order["attempts"]]


def stock(url: str, site: str) -> dict[str, tuple[int, int]]:
    engine = engine_for(url)
    with engine.connect() as c:
        rows = c.execute(
            select(StockRow.sku, StockRow.on_hand, StockRow.reserved).where(StockRow.site == site)
        )
        found = {sku: (on_hand, reserved) for sku, on_hand, reserved in rows}
    engine.dispose()
    return found


def order_row(url: str, order_id: str) -> OrderRow:
    engine = engine_for(url)
    with make_session_factory(engine)() as s:
        row = s.get(OrderRow, order_id)
        assert row is not None
    engine.dispose()
    return row


def store_snapshot(url: str) -> tuple[Any, ...]:
    """Everything an event may change: orders, timeline, stock and DC cancels."""
    engine = engine_for(url)
    with engine.connect() as c:
        orders = sorted(c.execute(select(OrderRow.id, OrderRow.status, OrderRow.site, OrderRow.shipped_at)))
        attempts = c.scalar(select(func.count()).select_from(RouteAttemptRow))
        stocks = sorted(c.execute(select(StockRow.site, StockRow.sku, StockRow.on_hand, StockRow.reserved)))
        cancels = sorted(c.execute(select(DcCancelRow.order_id, DcCancelRow.site, DcCancelRow.status)))
    engine.dispose()
    return tuple(orders), attempts, tuple(stocks), tuple(cancels)


def qty_per_sku(order: dict[str, Any]) -> dict[str, int]:
    qty: dict[str, int] = {}
    for line in order["lines"]:
        qty[line["sku"]] = qty.get(line["sku"], 0) + line["qty"]
    return qty


def move_in_store(url: str, order_id: str, to_site: str) -> None:
    """What a failover leaves behind: the order lives at `to_site`, a cancel is owed at the old DC."""
    engine = engine_for(url)
    with make_session_factory(engine).begin() as s:
        row = repo.get_order(s, order_id, for_update=True)
        assert row is not None and row.site is not None
        lines = repo.order_lines(s, order_id)
        repo.release(s, row.site, lines)
        assert repo.reserve(s, to_site, lines)
        repo.add_cancel(s, order_id, row.site, "failover (test)", datetime.now(UTC))
        row.site = to_site
    engine.dispose()


def sim_admin(api: Api, method: str, path: str, **kw: Any) -> httpx.Response:
    with httpx.Client(base_url=api.sim.admin_url, timeout=10, trust_env=False) as http:
        return http.request(method, path, **kw)


def other_site(api: Api, site: str) -> str:
    return next(s.code for s in api.world.sites if s.code != site)


# --- the webhook, with our own signed requests ---


def test_shipped_event_ships_the_order_at_the_dc_time_and_consumes_its_stock(api: Api) -> None:
    # given an order accepted by a DC
    order = place(api)
    site, before = order["site"], stock(api.url, order["site"])
    shipped_at = datetime.now(UTC) - timedelta(minutes=3)
    # when the DC says it shipped
    resp = post_event(api.client, site, event_body(order["id"], "shipped", shipped_at))
    # then the order is shipped at the DC's time, with a timeline row, and its units left the DC
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "order_id": order["id"],
        "site": site,
        "event": "shipped",
        "outcome": "applied",
        "status": "shipped",
    }
    shown = get_order(api, order["id"])
    assert shown["status"] == "shipped" and shown["site"] == site
    assert outcomes(shown)[-1] == "shipped"
    assert order_row(api.url, order["id"]).shipped_at == shipped_at
    after = stock(api.url, site)
    for sku, qty in qty_per_sku(order).items():
        assert after[sku] == (before[sku][0] - qty, before[sku][1] - qty)


def test_the_same_event_again_is_200_and_changes_nothing(api: Api) -> None:
    order = place(api)
    body = event_body(order["id"], "shipped")
    assert post_event(api.client, order["site"], body).json()["outcome"] == "applied"
    before = store_snapshot(api.url)
    again = post_event(api.client, order["site"], body)
    assert again.status_code == 200
    assert again.json()["outcome"] == "duplicate"
    assert store_snapshot(api.url) == before


BAD_SIGNATURES = {
    "missing": None,
    "another site's secret": "sign-with:daejeon",
    "the master secret itself": "sign-with-master",
    "another body": "sign-other-body",
    "not the scheme": "sha1=0000",
    "uppercase hex": "uppercase",
}


@pytest.mark.parametrize("how", list(BAD_SIGNATURES))
def test_a_webhook_with_a_bad_signature_is_401_and_changes_nothing(api: Api, how: str) -> None:
    # given an accepted order
    order = place(api)
    site = order["site"]
    body = event_body(order["id"], "shipped")
    secret = site_event_secret(MASTER, site)
    signature = {
        "missing": None,
        "another site's secret": sign(body, site_event_secret(MASTER, other_site(api, site))),
        "the master secret itself": sign(body, MASTER),
        "another body": sign(event_body(order["id"], "cancelled_by_dc"), secret),
        "not the scheme": "sha1=" + sign(body, secret).removeprefix("sha256="),
        "uppercase hex": "sha256=" + sign(body, secret).removeprefix("sha256=").upper(),
    }[how]
    before = store_snapshot(api.url)
    # when the event comes with a bad signature
    headers = {"Content-Type": "application/json"} | ({SIGNATURE_HEADER: signature} if signature else {})
    resp = api.client.post(f"/v1/sites/{site}/events", content=body, headers=headers)
    # then it is refused as a problem and nothing is written
    assert resp.status_code == 401
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert store_snapshot(api.url) == before
    assert get_order(api, order["id"])["status"] == "accepted"


def test_the_webhook_needs_no_bearer_token_and_ignores_one(api: Api) -> None:
    # a DC has no API token: the signature alone authenticates, and a token does not replace it
    order = place(api)
    body = event_body(order["id"])
    unsigned = api.client.post(
        f"/v1/sites/{order['site']}/events",
        content=body,
        headers={**api.as_role("admin"), "Content-Type": "application/json"},
    )
    assert unsigned.status_code == 401
    assert post_event(api.client, order["site"], body).status_code == 200


def test_without_a_master_secret_the_webhook_is_503_and_changes_nothing(make_api: Any) -> None:
    api: Api = make_api(dc_event_secret=None)
    order = place(api)
    before = store_snapshot(api.url)
    resp = post_event(api.client, order["site"], event_body(order["id"]))
    assert resp.status_code == 503
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert "not configured" in resp.json()["title"].lower()
    assert store_snapshot(api.url) == before


def test_unknown_site_and_unknown_order_are_404(api: Api) -> None:
    order = place(api)
    before = store_snapshot(api.url)
    no_site = post_event(api.client, "atlantis", event_body(order["id"]))
    no_order = post_event(api.client, order["site"], event_body("no-such-order"))
    assert (no_site.status_code, no_order.status_code) == (404, 404)
    assert all(r.headers["content-type"].startswith("application/problem+json") for r in (no_site, no_order))
    assert store_snapshot(api.url) == before


BAD_BODIES = [
    ("unknown field", {"carrier": "cj"}, "carrier"),
    ("no timezone", {"at": "2026-11-23T12:00:00"}, "at"),
    ("year 9999", {"at": "9999-12-31T23:59:59+00:00"}, "at"),
    ("two days ahead", {"at": "+2d"}, "at"),
    ("before 2000", {"at": "1970-01-01T00:00:00+00:00"}, "at"),
    ("a number for at", {"at": 1_700_000_000}, "at"),
    ("unknown event", {"event": "lost"}, "event"),
    ("no order id", {"order_id": None}, "order_id"),
]


@pytest.mark.parametrize(("why", "change", "named"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_an_invalid_event_is_422_naming_the_field_and_changes_nothing(
    api: Api, why: str, change: dict[str, Any], named: str
) -> None:
    order = place(api)
    fields: dict[str, Any] = {
        "order_id": order["id"],
        "event": "shipped",
        "at": datetime.now(UTC).isoformat(),
    }
    for key, value in change.items():
        if value is None:
            del fields[key]
        elif value == "+2d":
            fields[key] = (datetime.now(UTC) + timedelta(days=2)).isoformat()
        else:
            fields[key] = value
    before = store_snapshot(api.url)
    resp = post_event(api.client, order["site"], json.dumps(fields).encode())
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert named in [e["path"] for e in resp.json()["errors"]], resp.json()
    assert store_snapshot(api.url) == before


def test_a_malformed_event_body_is_a_400_problem(api: Api) -> None:
    order = place(api)
    resp = post_event(api.client, order["site"], b'{"order_id": "x", "event": ')
    assert resp.status_code == 400
    assert resp.headers["content-type"].startswith("application/problem+json")


def test_shipped_by_a_dc_the_order_was_moved_away_from_is_a_conflict_and_the_order_stays(api: Api) -> None:
    # given an order moved from its first DC to another, with a cancel owed at the first
    order = place(api)
    first = order["site"]
    target = other_site(api, first)
    move_in_store(api.url, order["id"], target)
    stock_before = (stock(api.url, first), stock(api.url, target))
    # when the first DC ships its copy anyway
    resp = post_event(api.client, first, event_body(order["id"], "shipped"))
    # then drctl answers 200 (the DC did its part), keeps the order where it lives, and records a conflict
    assert resp.status_code == 200
    assert resp.json()["outcome"] == "conflict" and resp.json()["status"] == "accepted"
    shown = get_order(api, order["id"])
    assert (shown["status"], shown["site"]) == ("accepted", target)
    assert outcomes(shown)[-1] == "ship_conflict"
    engine = engine_for(api.url)
    with engine.connect() as c:
        assert c.scalar(select(DcCancelRow.status).where(DcCancelRow.order_id == order["id"])) == "conflict"
    engine.dispose()
    assert (stock(api.url, first), stock(api.url, target)) == stock_before
    # and the same event again adds nothing
    before = store_snapshot(api.url)
    assert post_event(api.client, first, event_body(order["id"], "shipped")).json()["outcome"] == "duplicate"
    assert store_snapshot(api.url) == before


def test_cancelled_by_dc_holds_the_order_releases_its_stock_and_the_retry_loop_routes_it_again(
    api: Api,
) -> None:
    # given an accepted order
    order = place(api)
    site, before = order["site"], stock(api.url, order["site"])
    # when its DC gives it up
    resp = post_event(api.client, site, event_body(order["id"], "cancelled_by_dc"))
    # then it is held with no site, due now, and its reservation at that DC is released
    assert resp.status_code == 200 and resp.json()["outcome"] == "applied"
    shown = get_order(api, order["id"])
    assert (shown["status"], shown["site"]) == ("held", None)
    assert outcomes(shown)[-1] == "cancelled_by_dc"
    after = stock(api.url, site)
    for sku, qty in qty_per_sku(order).items():
        assert after[sku] == (before[sku][0], before[sku][1] - qty)
    # and the retry loop takes it to a DC again: not lost
    assert api.ctx.pipeline.redispatch_due() == 1
    again = get_order(api, order["id"])
    assert again["status"] == "accepted"
    holders = [
        s.code for s in api.world.sites if any(e["order_id"] == order["id"] for e in api.sim.ledger(s.code))
    ]
    assert holders == [again["site"]]


def test_an_event_racing_a_move_applies_only_where_the_order_lives_when_it_gets_the_lock(api: Api) -> None:
    # given a move of the order that holds its row lock (PostgreSQL: FOR UPDATE; SQLite: the write lock)
    order = place(api)
    first = order["site"]
    target = other_site(api, first)
    engine = engine_for(api.url)
    result: dict[str, httpx.Response] = {}
    try:
        with make_session_factory(engine).begin() as s:
            row = repo.get_order(s, order["id"], for_update=True)
            assert row is not None
            lines = repo.order_lines(s, order["id"])
            repo.release(s, first, lines)
            assert repo.reserve(s, target, lines)
            row.site = target
            s.flush()
            # when the first DC's shipped event arrives while the move is not yet committed
            sender = threading.Thread(
                target=lambda: result.update(
                    resp=post_event(api.client, first, event_body(order["id"], "shipped"))
                )
            )
            sender.start()
            time.sleep(0.5)
            assert "resp" not in result, "the event did not wait for the order's lock"
        sender.join(30)
    finally:
        engine.dispose()
    # then it is applied against the moved order: a conflict, the order stays at its new DC
    assert result["resp"].status_code == 200
    assert result["resp"].json()["outcome"] == "conflict"
    shown = get_order(api, order["id"])
    assert (shown["status"], shown["site"]) == ("accepted", target)


# --- polling the DCs ---


def poller_for(api: Api, after_s: float, interval_s: float = 60.0, batch: int = 100) -> DcPoller:
    """The leader's poll job over this control plane's parts, with its timing given here."""
    ctx = api.ctx
    http = httpx.Client(timeout=httpx.Timeout(0.5), trust_env=False)
    return DcPoller(
        ctx.sessions,
        ctx.sites,
        ctx.board,
        build_lifecycle(ctx),
        PollConfig(after_s, interval_s, batch),
        http,
        ctx.clock,
    )


def test_the_poll_job_finds_an_order_the_dc_shipped_and_one_it_gave_up(api: Api) -> None:
    # given two accepted orders, one shipped and one cancelled at their DCs without telling drctl
    shipped, dropped, untouched = place(api), place(api), place(api)
    assert sim_admin(api, "POST", f"/_sim/targets/{shipped['site']}/orders/{shipped['id']}/ship").is_success
    assert sim_admin(
        api, "POST", f"/_sim/targets/{dropped['site']}/orders/{dropped['id']}/cancel-by-dc"
    ).is_success
    poller = poller_for(api, after_s=0.0, interval_s=60.0, batch=10)
    try:
        # when the poll job runs
        report = poller.poll_due()
        # then it asked about each order once and applied what the DCs said
        assert (report.polled, report.shipped, report.cancelled_by_dc) == (3, 1, 1)
        assert get_order(api, shipped["id"])["status"] == "shipped"
        assert outcomes(get_order(api, shipped["id"]))[-1] == "shipped"
        assert get_order(api, dropped["id"])["status"] == "held"
        assert get_order(api, untouched["id"])["status"] == "accepted"
        # and a run right after asks nobody: each order is polled once per interval
        assert poller.poll_due().polled == 0
    finally:
        poller.close()


def test_the_poll_job_waits_for_orders_accepted_long_enough(api: Api) -> None:
    order = place(api)
    assert sim_admin(api, "POST", f"/_sim/targets/{order['site']}/orders/{order['id']}/ship").is_success
    poller = poller_for(api, after_s=3600.0)
    try:
        assert poller.poll_due().polled == 0
        assert get_order(api, order["id"])["status"] == "accepted"
    finally:
        poller.close()


def test_the_poll_job_is_bounded_by_its_batch_and_reaches_every_order_in_turn(api: Api) -> None:
    orders = [place(api) for _ in range(5)]
    poller = poller_for(api, after_s=0.0, interval_s=0.0, batch=2)
    try:
        seen = [poller.poll_due().polled for _ in range(3)]
    finally:
        poller.close()
    assert seen == [2, 2, 2]
    engine = engine_for(api.url)
    with engine.connect() as c:
        polled = c.scalar(
            select(func.count()).where(
                OrderRow.id.in_([o["id"] for o in orders]), OrderRow.next_attempt_at.is_not(None)
            )
        )
    engine.dispose()
    assert polled == 5  # the least recently polled go first: six polls reached all five orders


def test_the_poll_job_skips_a_dc_that_does_not_answer(api: Api) -> None:
    order = place(api)
    api.sim.set_fault(order["site"], "down")
    poller = poller_for(api, after_s=0.0)
    try:
        report = poller.poll_due()
    finally:
        poller.close()
    assert (report.polled, report.skipped) == (0, 1)
    assert get_order(api, order["id"])["status"] == "accepted"


# --- end to end: the simulator sends the events ---


@contextlib.contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """Serve `app` with uvicorn on a free loopback port in a thread; yield its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: server.started, 20, 0.05), "the control plane did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


@pytest.fixture
def live(db_url: str, world_sim: tuple[World, SimProcess]) -> Iterator[tuple[str, httpx.Client, Api]]:
    world, sim = world_sim
    tokens = prepare_database(db_url, world)
    app = build_app(db_url, dc_event_secret=MASTER, dc_poll_after_s=0.0, dc_poll_interval_s=1.0)
    with served(app) as base, httpx.Client(base_url=base, timeout=10, trust_env=False) as http:
        yield base, http, Api(TestClient(app), app, tokens, world, sim, db_url, OrderFactory(world, seed=5))


def point_dc_events(
    api: Api, base_url: str, secret: str | None = None, ship_after_s: float | None = None
) -> None:
    for site in api.world.sites:
        body = {
            "url": base_url,
            "secret": secret or site_event_secret(MASTER, site.code),
            "ship_after_s": ship_after_s,
        }
        resp = sim_admin(api, "PUT", f"/_sim/targets/{site.code}/events", json=body)
        assert resp.status_code == 200, resp.text


def place_live(http: httpx.Client, api: Api) -> dict[str, Any]:
    resp = http.post("/v1/orders", json=api.factory.order(), headers=api.as_role("ingest"))
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


def status_within(http: httpx.Client, api: Api, order_id: str, status: str, timeout_s: float) -> float | None:
    """Seconds until the order shows `status` (GET every 50 ms), or None if it did not in time."""
    started = time.monotonic()
    for _ in range(int(timeout_s / 0.05) + 2):  # at least one look, however short the timeout
        if http.get(f"/v1/orders/{order_id}", headers=api.as_role("viewer")).json()["status"] == status:
            return time.monotonic() - started
        if time.monotonic() - started >= timeout_s:
            break
        time.sleep(0.05)
    return None


@pytest.mark.e2e
def test_an_order_shipped_at_the_simulator_is_shipped_in_drctl_within_a_second(
    live: tuple[str, httpx.Client, Api],
) -> None:
    # given DCs that send signed events to drctl
    base, http, api = live
    point_dc_events(api, base)
    orders = [place_live(http, api) for _ in range(5)]
    for order in orders:
        # when the DC ships the order
        assert sim_admin(api, "POST", f"/_sim/targets/{order['site']}/orders/{order['id']}/ship").is_success
        # then drctl shows it shipped within a second, with the DC's time
        took = status_within(http, api, order["id"], "shipped", 1.0)
        assert took is not None, f"order {order['id']} not shipped in drctl within 1 s"
        print(f"shipped in drctl {took * 1000:.0f} ms after the DC shipped it")
        assert order_row(api.url, order["id"]).shipped_at is not None


@pytest.mark.e2e
def test_orders_the_simulator_ships_on_its_own_timer_all_become_shipped(
    live: tuple[str, httpx.Client, Api],
) -> None:
    base, http, api = live
    point_dc_events(api, base, ship_after_s=0.3)
    orders = [place_live(http, api) for _ in range(10)]
    for order in orders:
        assert status_within(http, api, order["id"], "shipped", 1.3) is not None
    for site in api.world.sites:
        assert all(e["status"] == "shipped" for e in api.sim.ledger(site.code))


@pytest.mark.e2e
def test_a_simulator_with_the_wrong_secret_changes_nothing(live: tuple[str, httpx.Client, Api]) -> None:
    base, http, api = live
    point_dc_events(api, base, secret="not-the-site-secret")
    order = place_live(http, api)
    assert sim_admin(api, "POST", f"/_sim/targets/{order['site']}/orders/{order['id']}/ship").is_success
    # the DC gives a refused (401) event up at once
    assert wait_until(lambda: api.sim.stats(order["site"])["events"]["failed"] == 1, 5, 0.05)
    assert status_within(http, api, order["id"], "shipped", 0.3) is None
    assert order_row(api.url, order["id"]).status == "accepted"


@pytest.mark.e2e
def test_a_dc_giving_an_order_up_gets_it_routed_again(live: tuple[str, httpx.Client, Api]) -> None:
    base, http, api = live
    point_dc_events(api, base)
    order = place_live(http, api)
    path = f"/_sim/targets/{order['site']}/orders/{order['id']}/cancel-by-dc"
    assert sim_admin(api, "POST", path).is_success
    assert status_within(http, api, order["id"], "held", 1.0) is not None
    api.ctx.pipeline.redispatch_due()
    assert status_within(http, api, order["id"], "accepted", 1.0) is not None


@pytest.mark.e2e
def test_with_webhooks_off_the_poll_job_finds_a_shipped_order_in_one_run(
    live: tuple[str, httpx.Client, Api],
) -> None:
    # given DCs that send no events (the simulator's default)
    _, http, api = live
    order = place_live(http, api)
    assert sim_admin(api, "POST", f"/_sim/targets/{order['site']}/orders/{order['id']}/ship").is_success
    assert status_within(http, api, order["id"], "shipped", 0.3) is None
    # when the leader's poll job runs, as wired from settings (orders due a poll at once, 1 s interval)
    poller = build_poller(api.ctx)
    try:
        started = time.monotonic()
        report = poller.poll_due()
        took = time.monotonic() - started
    finally:
        poller.close()
    # then the order is shipped, found within the run
    assert report.shipped == 1
    assert status_within(http, api, order["id"], "shipped", 0.0) is not None
    assert took < 1.0

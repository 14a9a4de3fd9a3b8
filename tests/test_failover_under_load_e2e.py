"""An operator failover in the middle of peak load: 16 clients keep posting, two workers take orders.

The defect this guards against: the failover read the site's in-flight orders once, while other
workers still routed new orders there from their cached state, and answered 200 with hundreds of
orders left live in the failed site's ledger. Afterwards every order must be in exactly one live
DC ledger (the one the store names) or `held`; none in two; none left at the failed site.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from test_operations_e2e import icheon_orders

from chaos.order_stream import OrderFactory
from chaos.sim_process import SimProcess, wait_until
from control_plane.domain import World
from control_plane.store.tables import DcCancelRow, OrderRow

from harness import (
    control_plane,
    engine_for,
    prepare_database,
    record_sample_bia,
    start_simulator,
    write_test_world,
)

pytestmark = pytest.mark.e2e

VICTIM = "icheon"
CLIENTS = 16


def post_victim(base_url: str, action: str, headers: dict[str, str], body: dict[str, Any]) -> httpx.Response:
    """An operator's failover or failback of the victim."""
    return httpx.post(
        f"{base_url}/v1/sites/{VICTIM}/{action}", headers=headers, json=body, timeout=300, trust_env=False
    )


def mixed_orders(world: World, n: int, seed: int) -> list[dict[str, Any]]:
    """Mostly orders near the victim (its region's demand), the rest anywhere."""
    near = icheon_orders(world, n, seed=seed)
    factory = OrderFactory(world, seed=seed + 1)
    return [body if i % 5 else factory.order() for i, body in enumerate(near)]


class Load:
    """16 clients posting until told to stop (after the operation under test), bounded in count and time.

    With `tries` > 1 a body answered 5xx (or not at all) is posted again, up to `tries` times, as
    the Locust and bench clients do with a 503 and its Retry-After; `answers` holds each body's final
    answer, `refused` every 5xx on the way, and `gave_up` the bodies that never got one.
    """

    def __init__(
        self, base_url: str, token: str, bodies: list[dict[str, Any]], max_s: float = 180, tries: int = 1
    ) -> None:
        self.answers: list[httpx.Response] = []
        self.refused: list[httpx.Response] = []
        self.unanswered = 0
        self.gave_up = 0
        self._tries = tries
        self._bodies = iter(bodies)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._deadline = time.monotonic() + max_s
        self._base, self._token = base_url, token
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(CLIENTS)]

    def _next(self) -> dict[str, Any] | None:
        with self._lock:
            return next(self._bodies, None)

    def _post(self, http: httpx.Client, body: dict[str, Any]) -> httpx.Response | None:
        for attempt in range(self._tries):
            last = attempt == self._tries - 1
            try:
                resp = http.post("/v1/orders", json=body)
            except httpx.TransportError:
                if self._tries == 1:
                    raise
                with self._lock:
                    self.unanswered += 1
                time.sleep(0.2)
                continue
            if resp.status_code < 500 or last:
                return resp
            with self._lock:
                self.refused.append(resp)
            time.sleep(float(resp.headers.get("retry-after", "1")) / 4)  # bounded by `tries`
        return None

    def _client(self) -> None:
        headers = {"Authorization": f"Bearer {self._token}"}
        with httpx.Client(base_url=self._base, headers=headers, timeout=30, trust_env=False) as http:
            while not self._stop.is_set() and time.monotonic() < self._deadline:
                body = self._next()
                if body is None:
                    return
                resp = self._post(http, body)
                with self._lock:
                    if resp is None:
                        self.gave_up += 1
                    else:
                        self.answers.append(resp)

    def posted(self) -> int:
        with self._lock:
            return len(self.answers) + self.gave_up

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(90)
        assert not any(t.is_alive() for t in self._threads), "a load client did not stop in 90 s"


def placed_count(url: str) -> int:
    engine = engine_for(url)
    with engine.connect() as c:
        n = c.scalar(select(func.count()).select_from(OrderRow)) or 0
    engine.dispose()
    return int(n)


def store_view(url: str) -> tuple[dict[str, tuple[str, str | None]], int]:
    """id -> (status, site) for every order, and how many cancels are still owed at the victim."""
    engine = engine_for(url)
    with engine.connect() as c:
        orders = {
            oid: (status, site)
            for oid, status, site in c.execute(select(OrderRow.id, OrderRow.status, OrderRow.site))
        }
        owed = c.scalar(
            select(func.count()).where(DcCancelRow.site == VICTIM, DcCancelRow.status == "pending")
        )
    engine.dispose()
    return orders, int(owed or 0)


def wait_quiet(url: str, timeout_s: float = 90) -> None:
    """No order mid-dispatch; held ones may stay held (no DC can take them)."""
    engine = engine_for(url)
    try:

        def quiet() -> bool:
            with engine.connect() as c:
                return not c.scalar(select(func.count()).where(OrderRow.status == "routed"))

        assert wait_until(quiet, timeout_s, 0.25), "orders still mid-dispatch"
    finally:
        engine.dispose()


def reconcile_live(url: str, sim: SimProcess, world: World, ignore_victim: bool) -> Counter[str]:
    """Every order the store has is held, or live in exactly the one ledger the store names.

    `ignore_victim`: the failed site is unreachable, so its ledger may still hold the copies whose
    cancels are owed (checked separately, after failback). The store and the ledgers are read one
    after the other while held orders are still retried, so an order may move in between: the check
    is repeated (bounded) until it holds; a real loss or duplicate never goes away.
    """
    for _ in range(20):
        try:
            return _reconcile_once(url, sim, world, ignore_victim)
        except AssertionError:
            time.sleep(0.5)
    return _reconcile_once(url, sim, world, ignore_victim)


def _reconcile_once(url: str, sim: SimProcess, world: World, ignore_victim: bool) -> Counter[str]:
    orders, _ = store_view(url)
    holders: dict[str, list[str]] = {}
    for site in world.sites:
        if ignore_victim and site.code == VICTIM:
            continue
        for entry in sim.ledger(site.code):
            holders.setdefault(entry["order_id"], []).append(site.code)
    problems = []
    for oid, (status, site) in orders.items():
        live = holders.get(oid, [])
        if status == "held":
            if live:
                problems.append((oid, status, site, live))
        elif status == "accepted":
            if live != [site]:
                problems.append((oid, status, site, live))
        else:
            problems.append((oid, status, site, live))
    strangers = [oid for oid in holders if oid not in orders]
    assert not problems, f"{len(problems)} orders not in exactly one live ledger, e.g. {problems[:5]}"
    assert not strangers, f"{len(strangers)} DC orders unknown to the store, e.g. {strangers[:3]}"
    return Counter(status for status, _ in orders.values())


@pytest.mark.parametrize("fault", [None, "down", "partition"])
def test_failover_in_mid_load_leaves_no_live_order_at_the_site(
    fault: str | None, pg_url: str, tmp_path: Path
) -> None:
    world, path = write_test_world(tmp_path / "world.yaml")
    tokens = prepare_database(pg_url, world)
    record_sample_bia(pg_url)  # so the failover weighs its targets' critical stock (target_stock: warn)
    op = {"Authorization": f"Bearer {tokens['operator']}"}
    bodies = mixed_orders(world, 8000, seed=31)
    with start_simulator(path) as sim, control_plane(pg_url, tmp_path, workers=2) as cp:
        with Load(cp.base_url, tokens["ingest"], bodies) as load:
            # given the load well under way, mostly routed to the victim
            assert wait_until(lambda: placed_count(pg_url) >= 300, 120, 0.1), "the load did not start"
            if fault:
                sim.set_fault(VICTIM, mode=fault)
            else:
                # the operator reads the priced options first, under the same load: nothing moves
                plan = post_victim(
                    cp.base_url, "failover", op, {"reason": "flood at Icheon", "dry_run": True}
                )
                assert plan.status_code == 200, plan.text
                assert plan.json()["recommendation"]["option"] is not None, plan.json()["recommendation"]
                assert {o["name"] for o in plan.json()["options"]} >= {"default", "hold"}
            # when an operator fails the victim over in the middle of it
            started = time.monotonic()
            resp = post_victim(cp.base_url, "failover", op, {"reason": "flood at Icheon", "force": True})
            took = time.monotonic() - started
            assert resp.status_code == 200, resp.text
            body = resp.json()
            # then the answer says nothing is left there ...
            assert body["moved"]["live_left"] == 0, body["moved"]
            # and the load went on after the answer: posts that met the site already out of routing
            at_answer = load.posted()
            assert wait_until(lambda: load.posted() >= at_answer + 200, 60, 0.05), "the load ended first"
        assert all(r.status_code in (200, 201, 202) for r in load.answers), Counter(
            r.status_code for r in load.answers
        )
        wait_quiet(pg_url)
        orders, owed = store_view(pg_url)
        # ... and once the load has ended, no order lives at the victim in the store
        assert not [oid for oid, (status, site) in orders.items() if site == VICTIM], took
        if fault is None:
            # the DC answers: every copy it had is cancelled there (directly or by the outbox)
            assert wait_until(lambda: sim.ledger(VICTIM) == [], 30, 0.25), len(sim.ledger(VICTIM))
            reconcile_live(pg_url, sim, world, ignore_victim=False)
            return
        # the DC is unreachable: its copies are owed cancels, every other order lives in one ledger
        assert owed > 0
        reconcile_live(pg_url, sim, world, ignore_victim=True)
        # when it returns, failback cancels every owed copy there before reopening it
        sim.clear_fault(VICTIM)
        time.sleep(1.2)  # the cancel settle time of the test settings: a 404 is trusted after it
        back = post_victim(cp.base_url, "failback", op, {"reason": "water pumped out"})
        assert back.status_code == 200, back.text
        _, owed_after = store_view(pg_url)
        assert owed_after == 0
        # held orders may go to the reopened site now; every copy there must be one the store names
        reconcile_live(pg_url, sim, world, ignore_victim=False)

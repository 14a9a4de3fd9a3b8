"""Failover and failback end to end: real DCs, real PostgreSQL, a control plane process, reconciled."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from test_order_path_e2e import post_all, reconcile, settle

from chaos.order_stream import OrderFactory
from chaos.sim_process import SimProcess
from control_plane.domain import World
from control_plane.store.tables import AuditEventRow, DcCancelRow, OrderRow, RouteAttemptRow

from harness import control_plane, engine_for, prepare_database, start_simulator, write_test_world

pytestmark = pytest.mark.e2e

# Next to Icheon, for SKUs Icheon, Daejeon and Busan hold but Seoul MFC does not: routing picks Icheon,
# and its backups can take every order after a failover.
NEAR_ICHEON = {"region": "capital", "postal_code": "17379", "lat": 37.28, "lon": 127.44}
SKUS = [f"KR-{n:04d}" for n in range(21, 36)]


def icheon_orders(world: World, n: int, seed: int = 21) -> list[dict[str, Any]]:
    factory = OrderFactory(world, seed=seed)
    prices = {s.sku: str(s.unit_price) for s in world.catalog}
    return [
        factory.order(
            ship_to=NEAR_ICHEON,
            lines=[{"sku": SKUS[i % len(SKUS)], "qty": 1, "unit_price": prices[SKUS[i % len(SKUS)]]}],
        )
        for i in range(n)
    ]


def row_counts(url: str) -> tuple[int, ...]:
    engine = engine_for(url)
    with engine.connect() as c:
        out = (
            c.scalar(select(func.count()).select_from(OrderRow)) or 0,
            c.scalar(select(func.count()).select_from(RouteAttemptRow)) or 0,
            c.scalar(select(func.count()).select_from(AuditEventRow)) or 0,
        )
        sites = tuple(sorted(Counter(site for (site,) in c.execute(select(OrderRow.site))).items()))
    engine.dispose()
    return (*out, hash(sites))


def test_failover_moves_every_order_and_failback_cancels_at_the_old_dc_first(
    pg_url: str, tmp_path: Path
) -> None:
    world, path = write_test_world(tmp_path / "world.yaml")
    tokens = prepare_database(pg_url, world)
    with start_simulator(path) as sim, control_plane(pg_url, tmp_path) as cp:
        op = {"Authorization": f"Bearer {tokens['operator']}"}
        # given 1,000 orders accepted by Icheon, which then goes down
        answers = post_all(cp.base_url, tokens["ingest"], icheon_orders(world, 1000), 16)
        assert Counter(r.json()["site"] for r in answers) == Counter({"icheon": 1000})
        sim.set_fault("icheon", mode="down")
        # when an operator asks for a dry run, nothing changes ...
        before = row_counts(pg_url)
        dry = httpx.post(f"{cp.base_url}/v1/sites/icheon/failover", headers=op, timeout=120, trust_env=False,
                         json={"reason": "flood at Icheon", "dry_run": True}).json()  # fmt: skip
        assert row_counts(pg_url) == before
        assert dry["plan"]["orders_to_move"] == 1000

        # ... and of two operators pressing the button at once, exactly one goes through
        def press() -> httpx.Response:
            return httpx.post(
                f"{cp.base_url}/v1/sites/icheon/failover",
                headers=op,
                timeout=300,
                trust_env=False,
                json={"reason": "flood at Icheon"},
            )

        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda _: press(), range(2)))
        assert sorted(r.status_code for r in answers) == [200, 409]
        real = next(r for r in answers if r.status_code == 200)
        refused = next(r for r in answers if r.status_code == 409).json()
        assert refused["rule"] in ("one_change_per_site", "already_failed_over")
        # and the failover does what the plan said
        body = real.json()
        assert body["moved"]["per_target"] == dry["plan"]["per_target"]
        assert body["plan"]["late"] == dry["plan"]["late"]
        assert body["moved"]["cancel_pending"] == 1000  # the DC is down: every cancel is owed
        settle_orders(pg_url)
        # then no order is at Icheon any more; each lives in exactly one *live* ledger
        assert all(site != "icheon" for site in sites_of(pg_url))
        # when Icheon returns, failback first cancels the owed orders there, then reopens routing
        sim.clear_fault("icheon")
        # the failover's cancels went through Icheon's breaker and opened it: failback's site_healthy
        # rule waits for its reset timeout (1 s in the test settings) like an operator would
        time.sleep(1.2)
        back = httpx.post(f"{cp.base_url}/v1/sites/icheon/failback", headers=op, timeout=300, trust_env=False,
                          json={"reason": "water pumped out"})  # fmt: skip
        assert back.status_code == 200, back.text
        # (the cancel outbox may have delivered a few itself once the DC answered again)
        assert 0 < back.json()["cancelled_first"] <= 1000
        assert cancels_done_at(pg_url, "icheon") == 1000
        assert sim.ledger("icheon") == []  # every old copy cancelled before new orders arrive
        more = post_all(cp.base_url, tokens["ingest"], icheon_orders(world, 20, seed=22), 4)
        assert {(r.status_code, r.json()["site"]) for r in more} == {(201, "icheon")}
        settle(pg_url)
        # and in the end every order is held by exactly one DC, none twice
        reconcile(pg_url, sim, world)


def cancels_done_at(url: str, site: str) -> int:
    engine = engine_for(url)
    with engine.connect() as c:
        done = c.scalar(select(func.count()).where(DcCancelRow.site == site, DcCancelRow.status == "done"))
    engine.dispose()
    return int(done or 0)


def settle_orders(url: str) -> None:
    """Wait until no order is held or mid-dispatch (cancels may stay owed while a DC is down)."""
    from chaos.sim_process import wait_until

    engine = engine_for(url)
    try:

        def quiet() -> bool:
            with engine.connect() as c:
                return not c.scalar(select(func.count()).where(OrderRow.status.in_(("held", "routed"))))

        assert wait_until(quiet, 60, 0.25)
    finally:
        engine.dispose()


def sites_of(url: str) -> list[str | None]:
    engine = engine_for(url)
    with engine.connect() as c:
        out = [site for (site,) in c.execute(select(OrderRow.site))]
    engine.dispose()
    return out


def test_no_token_reaches_a_log_line(
    pg_url: str, tmp_path: Path, world_and_sim: tuple[World, SimProcess]
) -> None:
    world, _ = world_and_sim
    tokens = prepare_database(pg_url, world)
    with control_plane(pg_url, tmp_path, extra_env={"DRCTL_LOG_LEVEL": "DEBUG"}) as cp:
        post_all(cp.base_url, tokens["ingest"], [OrderFactory(world, seed=2).order() for _ in range(20)], 4)
        httpx.get(
            f"{cp.base_url}/v1/sites",
            headers={"Authorization": "Bearer drctl_not-a-real-token-xyz"},
            trust_env=False,
        )
        logs = cp.logs()
    assert logs  # the control plane did log
    for token in [*tokens.values(), "drctl_not-a-real-token-xyz"]:
        assert token not in logs
        assert token.removeprefix("drctl_") not in logs


@pytest.fixture
def world_and_sim(tmp_path: Path):  # type: ignore[no-untyped-def]
    world, path = write_test_world(tmp_path / "world.yaml")
    sim = start_simulator(path)
    yield world, sim
    sim.stop()


def test_policy_on_fails_a_dc_over_by_itself_under_load(pg_url: str, tmp_path: Path) -> None:
    import threading
    import time

    from chaos.sim_process import wait_until

    world, path = write_test_world(tmp_path / "world.yaml")
    tokens = prepare_database(pg_url, world)
    policy = {"DRCTL_AUTO_FAILOVER": "on", "DRCTL_AUTO_FAILOVER_AFTER_S": "2"}
    with start_simulator(path) as sim, control_plane(pg_url, tmp_path, extra_env=policy) as cp:
        viewer = {"Authorization": f"Bearer {tokens['viewer']}"}
        post_all(cp.base_url, tokens["ingest"], icheon_orders(world, 200), 8)
        # given steady load on Icheon, when it goes down
        stop = threading.Event()
        load = icheon_orders(world, 2000, seed=23)

        def keep_posting() -> None:
            with httpx.Client(base_url=cp.base_url, headers={"Authorization": f"Bearer {tokens['ingest']}"},
                              timeout=30, trust_env=False) as http:  # fmt: skip
                for body in load:
                    if stop.is_set():
                        return
                    http.post("/v1/orders", json=body)
                    time.sleep(0.02)

        stream = threading.Thread(target=keep_posting)
        stream.start()
        time.sleep(1)
        sim.set_fault("icheon", mode="down")
        down_at = time.monotonic()

        def icheon_out() -> bool:
            site = httpx.get(f"{cp.base_url}/v1/sites/icheon", headers=viewer, trust_env=False).json()
            return not site["accepting"]

        # then the control plane fails it over by itself, within the configured 2 s (+ detection and a tick)
        assert wait_until(icheon_out, 20, 0.1)
        took = time.monotonic() - down_at
        stop.set()
        stream.join()
        # 2 s configured; the rest is detection (fail_max failures) and one background tick, with
        # room for a busy CI machine
        assert took <= 2 + 6, f"automatic failover took {took:.1f}s"
        incidents = httpx.get(f"{cp.base_url}/v1/incidents", headers=viewer, trust_env=False).json()
        assert incidents[0]["subject"] == "icheon" and incidents[0]["trigger"] == "breaker"
        # and moves every order Icheon held to backups (the move goes on after routing stopped)
        assert wait_until(lambda: not orders_at(pg_url, "icheon"), 60, 0.25), orders_at(pg_url, "icheon")[:3]
        settle_orders(pg_url)
        sim.clear_fault("icheon")
        settle(pg_url)
        reconcile(pg_url, sim, world)


def orders_at(url: str, site: str) -> list[tuple[str, str, int]]:
    engine = engine_for(url)
    with engine.connect() as c:
        rows = c.execute(
            select(OrderRow.id, OrderRow.status, OrderRow.attempts_count).where(OrderRow.site == site)
        )
        out = [tuple(r) for r in rows]
    engine.dispose()
    return out  # type: ignore[return-value]

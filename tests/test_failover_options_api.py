"""Business-aware failover over the API (issue 16): after a BIA, the dry run prices every option and
recommends the cheapest that passes every rule; targets short of a critical SKU are flagged, or
refused by setting, and pass once stocked. A real control plane and real simulator DCs, on SQLite
and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from chaos.order_stream import OrderFactory
from control_plane.app import create_app
from control_plane.domain import World
from control_plane.settings import Settings
from control_plane.store.db import make_session_factory
from control_plane.store.tables import AuditEventRow, IncidentEventRow, OrderRow, SiteRow, StockRow
from control_plane.world.repository import save_world

from harness import engine_for, prepare_database, record_sample_bia, start_simulator, write_test_world


@dataclass
class Stack:
    client: TestClient
    tokens: dict[str, str]
    url: str
    world: World

    def post(self, path: str, body: dict[str, Any], role: str = "operator") -> httpx.Response:
        return self.client.post(path, json=body, headers={"Authorization": f"Bearer {self.tokens[role]}"})

    def get(self, path: str, role: str = "viewer") -> Any:
        resp = self.client.get(path, headers={"Authorization": f"Bearer {self.tokens[role]}"})
        assert resp.status_code == 200, resp.text
        return resp.json()

    def scalar(self, stmt: Any) -> Any:
        engine = engine_for(self.url)
        with engine.connect() as c:
            value = c.scalar(stmt)
        engine.dispose()
        return value

    def restock(self, units: dict[tuple[str, str], int], add: bool = False) -> None:
        """Set (or, with `add`, raise) stock levels as a world load does (`drctl world load`)."""
        if add:
            engine = engine_for(self.url)
            with engine.connect() as c:
                on_hand = {(r.site, r.sku): r.on_hand for r in c.execute(select(StockRow))}
            engine.dispose()
            units = {key: on_hand.get(key, 0) + n for key, n in units.items()}
        self.world = replace(self.world, stock={**self.world.stock, **units})
        engine = engine_for(self.url)
        with make_session_factory(engine).begin() as s:
            save_world(s, self.world, datetime.now(UTC))
        engine.dispose()


@pytest.fixture
def make_stack(db_url: str, tmp_path: Path) -> Iterator[Any]:
    world, path = write_test_world(tmp_path / "world.yaml")
    sim = start_simulator(path)
    tokens = prepare_database(db_url, world)
    record_sample_bia(db_url, seed=11)
    clients: list[TestClient] = []

    def make(orders: int = 12, **settings: Any) -> Stack:
        base = {"cancel_settle_s": 0.0, "dc_connect_timeout_s": 0.5, "dc_read_timeout_s": 0.5}
        app = create_app(Settings(database_url=db_url, background_jobs=False, **{**base, **settings}))
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        stack = Stack(client, tokens, db_url, world)
        factory = OrderFactory(world, seed=5, channels=["web"])
        for _ in range(orders):
            assert stack.post("/v1/orders", factory.order(), role="ingest").status_code in (200, 201, 202)
        return stack

    yield make
    for c in clients:
        c.__exit__(None, None, None)
    sim.stop()


def dry_run(st: Stack, site: str, **body: Any) -> dict[str, Any]:
    resp = st.post(f"/v1/sites/{site}/failover", {"reason": "flood at the DC", "dry_run": True, **body})
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def test_a_dry_run_prices_every_option_and_recommends_the_cheapest_that_passes(make_stack: Any) -> None:
    st = make_stack()
    written = (
        st.scalar(select(func.count()).select_from(AuditEventRow)),
        st.scalar(select(func.count()).select_from(OrderRow)),
    )
    answer = dry_run(st, "icheon", targets=["busan", "gwangju"])
    options = {o["name"]: o for o in answer["options"]}
    # the default targets, each backup alone, the operator's set, and holding the orders
    assert list(options) == ["default", "backup:daejeon", "backup:seoul-mfc", "requested", "hold"]
    assert options["requested"]["requested"] is True and options["requested"]["targets"] == [
        "busan",
        "gwangju",
    ]
    for o in options.values():
        for figure in (
            "orders_at_risk_per_hour",
            "revenue_at_risk_per_hour",
            "extra_cost_per_hour",
            "cost_first_hour",
        ):
            assert isinstance(o[figure], int | float) and o[figure] >= 0, (o["name"], figure)
        assert {"late", "notices", "held", "per_target", "passes_rules", "warnings"} <= set(o)
    # holding puts all of Icheon's expected orders (this hour of the week) at risk; moving them does not
    hold = options["hold"]
    assert hold["orders_at_risk_per_hour"] == hold["orders_per_hour"] > 0
    assert hold["revenue_at_risk_per_hour"] > options["default"]["revenue_at_risk_per_hour"]
    assert hold["held"] == answer["plan"]["orders_to_move"] > 0  # the in-flight orders wait too
    # Busan and Gwangju are far from the capital: extra transit, and more cost than Icheon's own backups
    assert options["requested"]["extra_transit_hours"] > options["backup:daejeon"]["extra_transit_hours"]
    chosen = answer["recommendation"]
    passing = [o for o in options.values() if o["passes_rules"]]
    assert chosen["option"] == min(passing, key=lambda o: o["cost_first_hour"])["name"]
    assert "cheapest" in chosen["reason"] and chosen["currency"] == "KRW"
    # a dry run changes nothing
    assert (
        st.scalar(select(func.count()).select_from(AuditEventRow)),
        st.scalar(select(func.count()).select_from(OrderRow)),
    ) == written
    assert st.scalar(select(SiteRow.accepting).where(SiteRow.code == "icheon")) is True


def test_when_every_failover_breaks_a_rule_the_next_cheapest_that_passes_is_recommended(
    make_stack: Any,
) -> None:
    # six sites must stay accepting, and the world has five: every option that moves orders is refused
    st = make_stack(safety_min_accepting_sites=6)
    answer = dry_run(st, "icheon")
    options = {o["name"]: o for o in answer["options"]}
    moving = [o for name, o in options.items() if name != "hold"]
    assert all(o["failing_rule"] == "min_accepting_sites" for o in moving)
    assert all(o["cost_first_hour"] < options["hold"]["cost_first_hour"] for o in moving)  # cheaper, refused
    chosen = answer["recommendation"]
    assert chosen["option"] == "hold"
    assert "cheaper but refused" in chosen["reason"] and "breaks min_accepting_sites" in chosen["reason"]


def short_skus(st: Stack, site: str, target: str) -> dict[str, int]:
    """Empty `target`'s stock of every critical SKU of `site`; return what was there."""
    doc = st.get("/v1/bia/latest")["result"]
    critical = {r["sku"] for r in doc["site_skus"] if r["site"] == site and r["critical"]}
    assert critical, "the BIA names no critical SKU"
    before = {sku: st.world.stock.get((target, sku), 0) for sku in critical}
    st.restock({(target, sku): 0 for sku in critical})
    return before


def test_targets_missing_a_critical_sku_are_refused_by_setting_then_pass_once_stocked(
    make_stack: Any,
) -> None:
    st = make_stack(safety_target_stock="refuse")
    short_skus(st, "icheon", "daejeon")
    resp = st.post("/v1/sites/icheon/failover", {"reason": "flood at Icheon", "targets": ["daejeon"]})
    assert resp.status_code == 409, resp.text
    problem = resp.json()
    assert problem["rule"] == "target_stock"
    rows = problem["details"]["rows"]
    assert rows and all(r["target"] == "daejeon" and r["shortfall"] > 0 for r in rows)
    assert problem["details"]["sku"] in problem["detail"] and "pre-position" in problem["detail"]
    assert st.scalar(select(SiteRow.accepting).where(SiteRow.code == "icheon")) is True  # nothing changed
    # the held orders such a failover would cause are counted
    rule = next(r for r in dry_run(st, "icheon", targets=["daejeon"])["rules"] if r["name"] == "target_stock")
    assert rule["numbers"]["orders_held_over_horizon"] > 0
    plan = dry_run(st, "icheon", targets=["daejeon"])["plan"]
    assert plan["held_for_stock_over_horizon"] == rule["numbers"]["orders_held_over_horizon"]
    # place the units the rule asked for: it passes, and the failover goes through
    st.restock({("daejeon", r["sku"]): r["shortfall"] for r in rows}, add=True)
    rule = next(r for r in dry_run(st, "icheon", targets=["daejeon"])["rules"] if r["name"] == "target_stock")
    assert rule["ok"] and not rule["warning"] and rule["rows"] == [], rule
    resp = st.post("/v1/sites/icheon/failover", {"reason": "flood at Icheon", "targets": ["daejeon"]})
    assert resp.status_code == 200, resp.text


def test_targets_missing_a_critical_sku_are_flagged_and_the_warning_is_on_the_record(make_stack: Any) -> None:
    st = make_stack()  # safety_target_stock defaults to warn
    short_skus(st, "icheon", "daejeon")
    resp = st.post("/v1/sites/icheon/failover", {"reason": "flood at Icheon", "targets": ["daejeon"]})
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["warnings"] == ["target_stock"]
    rule = next(r for r in answer["rules"] if r["name"] == "target_stock")
    assert rule["ok"] and rule["warning"] and rule["rows"][0]["shortfall"] > 0
    events = st.scalar(
        select(func.count()).select_from(IncidentEventRow).where(IncidentEventRow.kind == "rule_warning")
    )
    assert events == 1
    audit = st.get("/v1/audit?action=site.failover", role="admin")
    assert audit[0]["after"]["warned_rules"] == ["target_stock"]

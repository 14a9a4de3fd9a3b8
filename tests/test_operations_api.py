"""Operator failover API without traffic: safety rules refuse by name, force passes, auth on every POST."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select

from control_plane.app import create_app
from control_plane.settings import Settings
from control_plane.store.tables import AuditEventRow, IncidentRow, OrderRow, SiteRow
from control_plane.world.loader import load_world_file

from harness import SAMPLE_WORLD, engine_for, prepare_database


def world_file(tmp_path: Path, **region_transit: float) -> Path:
    """The sample world (real capacities), with some regions' max transit hours tightened."""
    data = yaml.safe_load(SAMPLE_WORLD.read_text())
    for region in data["regions"]:
        if region["code"] in region_transit:
            region["max_transit_hours"] = region_transit[region["code"]]
    path = tmp_path / "world.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def make_api(db_url: str, tmp_path: Path) -> Iterator[Any]:
    clients: list[TestClient] = []

    def make(world: Path | None = None, **settings: Any) -> tuple[TestClient, dict[str, str]]:
        w, _ = load_world_file(world or world_file(tmp_path))
        tokens = prepare_database(db_url, w)
        app = create_app(Settings(database_url=db_url, background_jobs=False, **settings))
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client, tokens

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def post(client: TestClient, token: str, path: str, **body: Any) -> Any:
    return client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})


def counts(url: str) -> tuple[int, int, int]:
    engine = engine_for(url)
    with engine.connect() as c:
        audit = c.scalar(select(func.count()).select_from(AuditEventRow)) or 0
        incidents = c.scalar(select(func.count()).select_from(IncidentRow)) or 0
        accepting = c.scalar(select(func.count()).where(SiteRow.accepting.is_(True))) or 0
    engine.dispose()
    return audit, incidents, accepting


def test_failover_refuses_when_too_few_sites_would_stay_accepting(make_api: Any, db_url: str) -> None:
    client, tokens = make_api(safety_min_accepting_sites=5)
    before = counts(db_url)
    resp = post(client, tokens["operator"], "/v1/sites/busan/failover", reason="flood drill")
    assert resp.status_code == 409
    assert resp.json()["rule"] == "min_accepting_sites"
    assert counts(db_url) == before


def test_failover_refuses_when_a_region_would_lose_its_only_close_site(
    make_api: Any, db_url: str, tmp_path: Path
) -> None:
    # only the Seoul micro-fulfillment site is within 6.5 h of the capital region's centroid
    client, tokens = make_api(world=world_file(tmp_path, capital=6.5))
    resp = post(client, tokens["operator"], "/v1/sites/seoul-mfc/failover", reason="power cut")
    assert resp.status_code == 409
    problem = resp.json()
    assert problem["rule"] == "region_coverage" and "capital" in problem["detail"]


def test_failover_refuses_when_targets_lack_capacity(make_api: Any, db_url: str) -> None:
    # given Icheon took 40 orders in the last hour and Seoul MFC, the only target, has room for 30
    client, tokens = make_api(safety_capacity_margin=1.0)
    took_recently(db_url, "icheon", 40)
    engine = engine_for(db_url)
    with engine.begin() as c:
        c.execute(SiteRow.__table__.update().where(SiteRow.code == "seoul-mfc").values(capacity_per_hour=30))
    engine.dispose()
    client.app.state.ctx.sites.refresh()
    # when Icheon is failed over to Seoul MFC alone, the capacity rule refuses with its numbers
    resp = post(client, tokens["operator"], "/v1/sites/icheon/failover", reason="test", targets=["seoul-mfc"])
    assert resp.status_code == 409
    problem = resp.json()
    assert problem["rule"] == "target_capacity"
    assert problem["details"]["spare_next_hour"] == 30 and problem["details"]["expected_hourly_demand"] == 40
    # and to every backup it passes
    ok = post(client, tokens["operator"], "/v1/sites/icheon/failover", reason="test", dry_run=True)
    assert {r["name"]: r["ok"] for r in ok.json()["rules"]}["target_capacity"]


def took_recently(url: str, site: str, n: int) -> None:
    now = datetime.now(UTC)
    rows = [
        {
            "id": f"recent-{i}", "channel": "web", "external_id": f"recent-{i}", "customer_id": "c",
            "customer_name": "-", "customer_locale": "ko", "notify_via": "email", "ship_region": "capital",
            "ship_postal_code": "1", "ship_lat": 37.3, "ship_lon": 127.4,
            "placed_at": now, "promised_by": now,
            "status": "shipped", "site": site, "total": 0, "attempts_count": 1, "routed_at": now,
            "created_at": now, "updated_at": now,
        }
        for i in range(n)
    ]  # fmt: skip
    engine = engine_for(url)
    with engine.begin() as c:
        c.execute(insert(OrderRow), rows)
    engine.dispose()


def test_force_with_a_reason_overrides_a_refusal_and_is_audited(make_api: Any, db_url: str) -> None:
    client, tokens = make_api(safety_min_accepting_sites=5)
    resp = post(client, tokens["operator"], "/v1/sites/busan/failover", reason="typhoon", force=True)
    assert resp.status_code == 200, resp.text
    assert resp.json()["overridden"] == ["min_accepting_sites"]
    audit = client.get("/v1/audit", headers={"Authorization": f"Bearer {tokens['admin']}"}).json()
    assert audit[0]["action"] == "site.failover.forced" and audit[0]["reason"] == "typhoon"
    sites = {
        s["code"]: s
        for s in client.get("/v1/sites", headers={"Authorization": f"Bearer {tokens['viewer']}"}).json()
    }
    assert sites["busan"]["accepting"] is False


def test_dry_run_writes_nothing(make_api: Any, db_url: str) -> None:
    client, tokens = make_api()
    before = counts(db_url)
    resp = post(client, tokens["operator"], "/v1/sites/gwangju/failover", reason="drill", dry_run=True)
    assert resp.status_code == 200 and resp.json()["dry_run"] is True
    assert {r["name"] for r in resp.json()["rules"]} == {
        "min_accepting_sites",
        "region_coverage",
        "target_capacity",
        "target_stock",
    }
    # without a BIA the options are listed but not priced, and none is recommended
    assert {o["name"] for o in resp.json()["options"]} >= {"default", "hold"}
    assert resp.json()["recommendation"]["option"] is None
    assert "no BIA run yet" in resp.json()["recommendation"]["reason"]
    assert counts(db_url) == before


def test_failback_refuses_an_unhealthy_site_and_force_passes(make_api: Any, db_url: str) -> None:
    client, tokens = make_api()
    assert post(client, tokens["operator"], "/v1/sites/gwangju/failover", reason="flood").status_code == 200
    # no simulator runs here: the DC does not answer its health check
    refused = post(client, tokens["operator"], "/v1/sites/gwangju/failback", reason="water gone")
    assert refused.status_code == 409 and refused.json()["rule"] == "site_healthy"
    forced = post(
        client, tokens["operator"], "/v1/sites/gwangju/failback", reason="checked on site", force=True
    )
    assert forced.status_code == 200, forced.text
    incidents = client.get("/v1/incidents", headers={"Authorization": f"Bearer {tokens['viewer']}"}).json()
    assert incidents[0]["subject"] == "gwangju" and incidents[0]["status"] == "resolved"


def test_idempotency_key_replays_the_first_answer(make_api: Any, db_url: str) -> None:
    client, tokens = make_api()
    headers = {"Authorization": f"Bearer {tokens['operator']}", "Idempotency-Key": "op-42"}
    first = client.post("/v1/sites/busan/failover", json={"reason": "fire"}, headers=headers)
    again = client.post("/v1/sites/busan/failover", json={"reason": "fire"}, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.headers.get("Idempotent-Replay") == "true" and again.json() == first.json()
    assert counts(db_url)[1] == 1  # one incident


def test_two_concurrent_failovers_of_one_site_let_exactly_one_through(make_api: Any) -> None:
    client, tokens = make_api()
    answers: list[int] = []
    barrier = threading.Barrier(2)

    def call() -> None:
        barrier.wait()
        answers.append(
            post(client, tokens["operator"], "/v1/sites/daejeon/failover", reason="race").status_code
        )

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == [200, 409]


def test_every_mutating_route_needs_a_token_and_more_than_viewer(make_api: Any) -> None:
    client, tokens = make_api()
    spec = client.get("/openapi.json").json()
    mutating = [
        (method, path)
        for path, ops in spec["paths"].items()
        for method in ops
        if method in ("post", "put", "patch", "delete")
    ]
    assert len(mutating) >= 4
    for method, path in mutating:
        url = path.replace("{code}", "busan").replace("{run_id}", "1").replace("{incident_id}", "1")
        url = url.replace("{order_id}", "no-such-order")
        if path == "/v1/sites/{code}/events":
            # a DC's webhook: signed, not a token (none configured here: refused before anything)
            assert client.post(url, json={}).status_code in (401, 503), path
            continue
        anonymous = client.request(method.upper(), url, json={})
        viewer = client.request(
            method.upper(), url, json={}, headers={"Authorization": f"Bearer {tokens['viewer']}"}
        )
        assert anonymous.status_code == 401, (method, path)
        assert viewer.status_code == 403, (method, path)


def test_failback_can_ramp_the_site_back_instead_of_all_at_once(make_api: Any) -> None:
    client, tokens = make_api()
    assert post(client, tokens["operator"], "/v1/sites/busan/failover", reason="flood").status_code == 200
    back = post(client, tokens["operator"], "/v1/sites/busan/failback", reason="dry", force=True, ramp_s=600)
    assert back.status_code == 200 and back.json()["ramp_s"] == 600
    site = client.get("/v1/sites/busan", headers={"Authorization": f"Bearer {tokens['viewer']}"}).json()
    assert site["accepting"] is True
    assert 0.1 <= site["ramp_weight"] < 0.2  # starts at 10 %, reaches 100 % after ten minutes

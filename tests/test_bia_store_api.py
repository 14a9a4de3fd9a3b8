"""BIA over the order history in the store, through the HTTP API: run, result, tiers on /v1/sites."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import polars as pl
import pytest
from fastapi.testclient import TestClient

from bia.engine import run_bia
from bia.history import generate_history
from bia.params import BiaParams
from control_plane.app import create_app
from control_plane.domain import World
from control_plane.settings import Settings
from control_plane.store.tables import OrderLineRow, OrderRow

from harness import ROOT, engine_for, prepare_database, store_history, write_test_world


@pytest.fixture
def api_with_history(
    db_url: str, tmp_path: Path
) -> Iterator[tuple[TestClient, dict[str, str], World, pl.DataFrame]]:
    world, _ = write_test_world(tmp_path / "world.yaml", capacity_scale=1, stock_scale=1)
    tokens = prepare_database(db_url, world)
    start = date.today() - timedelta(days=8)
    history = generate_history(world, days=7, seed=3, start=start, orders_per_day=400)
    store_history(db_url, history)
    app = create_app(Settings(database_url=db_url, background_jobs=False))
    with TestClient(app) as client:
        yield client, tokens, world, history


def wait_done(client: TestClient, token: str, run_id: int) -> dict[str, Any]:
    for _ in range(300):
        run = client.get(f"/v1/bia/runs/{run_id}", headers={"Authorization": f"Bearer {token}"}).json()
        if run["status"] != "running":
            return dict(run)
        time.sleep(0.1)
    raise AssertionError("BIA run did not finish in 30 s")


def test_bia_run_over_the_store_sets_tiers_and_rtos_on_sites(
    api_with_history: tuple[TestClient, dict[str, str], World, pl.DataFrame],
) -> None:
    client, tokens, world, history = api_with_history
    auth = {"Authorization": f"Bearer {tokens['operator']}"}
    # when an operator starts a run over the last 30 days of stored orders
    started = client.post("/v1/bia/runs", json={"days": 30}, headers=auth)
    assert started.status_code == 202 and started.json()["status"] == "running"
    run = wait_done(client, tokens["viewer"], started.json()["id"])
    # then it finishes over every stored order line, and its document validates against the schema
    assert run["status"] == "done", run["error"]
    assert run["order_lines"] == history.height
    schema = json.loads((ROOT / "bia" / "bia.schema.json").read_text())
    jsonschema.validate(run["result"], schema)
    latest = client.get("/v1/bia/latest", headers=auth).json()
    assert latest["id"] == run["id"]
    # and /v1/sites shows the same tier and RTO the analysis of that history gives directly
    direct = run_bia(history, world, BiaParams()).to_json_dict()
    expected = {s["code"]: (s["tier"], s["rto_hours"]) for s in direct["sites"]}
    sites = client.get("/v1/sites", headers=auth).json()
    assert {s["code"]: (s["tier"], s["rto_hours"]) for s in sites} == expected


def test_bia_run_needs_the_operator_role(
    api_with_history: tuple[TestClient, dict[str, str], World, pl.DataFrame],
) -> None:
    client, tokens, _, _ = api_with_history
    resp = client.post("/v1/bia/runs", json={}, headers={"Authorization": f"Bearer {tokens['viewer']}"})
    assert resp.status_code == 403


def test_unknown_bia_parameter_is_refused_before_any_run(
    api_with_history: tuple[TestClient, dict[str, str], World, pl.DataFrame],
) -> None:
    client, tokens, _, _ = api_with_history
    auth = {"Authorization": f"Bearer {tokens['operator']}"}
    resp = client.post("/v1/bia/runs", json={"params": {"gross_margn": 0.3}}, headers=auth)
    assert resp.status_code == 422 and "gross_margn" in resp.json()["detail"]
    bad = client.post("/v1/bia/runs", json={"params": {"gross_margin": 7}}, headers=auth)
    assert bad.status_code == 422
    assert client.get("/v1/bia/latest", headers=auth).status_code == 404


def test_run_over_an_empty_period_fails_with_a_reason(
    api_with_history: tuple[TestClient, dict[str, str], World, pl.DataFrame], db_url: str
) -> None:
    client, tokens, _, _ = api_with_history
    auth = {"Authorization": f"Bearer {tokens['operator']}"}
    engine = engine_for(db_url)
    with engine.begin() as c:
        c.execute(OrderLineRow.__table__.delete())
        c.execute(OrderRow.__table__.delete())
    engine.dispose()
    run = wait_done(client, tokens["viewer"], client.post("/v1/bia/runs", json={}, headers=auth).json()["id"])
    assert run["status"] == "failed" and "no orders" in run["error"]

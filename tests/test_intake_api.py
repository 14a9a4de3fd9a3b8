"""Intake validation and auth over HTTP: bad input gets problem+json naming the field, writes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from chaos.order_stream import OrderFactory
from control_plane.app import create_app
from control_plane.settings import Settings
from control_plane.store.tables import AuditEventRow, OrderLineRow, OrderRow, RouteAttemptRow

from harness import engine_for, prepare_database, write_test_world


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str], OrderFactory]]:
    world, _ = write_test_world(tmp_path / "world.yaml")
    tokens = prepare_database(db_url, world)
    app = create_app(Settings(database_url=db_url, background_jobs=False))
    with TestClient(app) as client:
        yield client, tokens, OrderFactory(world, seed=1)


def row_counts(url: str) -> tuple[int, ...]:
    engine = engine_for(url)
    with engine.connect() as c:
        counts = tuple(
            c.scalar(select(func.count()).select_from(t))
            for t in (OrderRow, OrderLineRow, RouteAttemptRow, AuditEventRow)
        )
    engine.dispose()
    return counts  # type: ignore[return-value]


def with_change(body: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    body = json.loads(json.dumps(body))
    target = body
    for key in path[:-1]:
        target = target[key]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


DELETE = object()
BAD_FIELDS = [
    (("lines",), DELETE, "lines"),
    (("lines",), [], "lines"),
    (("lines", 0, "qty"), 0, "lines[0].qty"),
    (("lines", 0, "qty"), -2, "lines[0].qty"),
    (("lines", 0, "qty"), "3", "lines[0].qty"),
    (("lines", 0, "qty"), 1.5, "lines[0].qty"),
    (("lines", 0, "sku"), "NO-SUCH-SKU", "lines[0].sku"),
    (("ship_to", "region"), "atlantis", "ship_to.region"),
    (("ship_to", "lat"), "north", "ship_to.lat"),
    (("customer",), DELETE, "customer"),
    (("channel",), "Web Shop!", "channel"),
    (("lines", 0, "unit_price"), "free", "lines[0].unit_price"),
    # each channel is a metric label: only the world's channels are taken
    (("channel",), "web-shop-of-the-day", "channel"),
    (("placed_at",), "9999-12-31T23:59:59Z", "placed_at"),
    (("placed_at",), "9999-12-31T23:00:00-14:00", "placed_at"),  # past the last instant in UTC
    (("placed_at",), "2001-01-01T00:00:00Z", "placed_at"),
    (("promised_by",), "2001-01-01T00:00:00Z", "promised_by"),  # before placed_at (now)
    (("promised_by",), "9999-12-31T00:00:00Z", "promised_by"),
    # PostgreSQL cannot store NUL: this was a 500 there
    (("external_id",), "ord\x00-1", "external_id"),
    (("customer", "name"), "Kim\x07", "customer.name"),
    (("lines", 0, "sku"), "SKU\x1b[31m", "lines[0].sku"),
]


@pytest.mark.parametrize(
    ("path", "value", "named"), BAD_FIELDS, ids=[b[2] + "=" + repr(b[1])[:12] for b in BAD_FIELDS]
)
def test_bad_order_is_refused_naming_the_field_and_nothing_is_written(
    api: tuple[TestClient, dict[str, str], OrderFactory],
    db_url: str,
    path: tuple[Any, ...],
    value: Any,
    named: str,
) -> None:
    client, tokens, factory = api
    before = row_counts(db_url)
    body = with_change(factory.order(), path, value)
    resp = client.post("/v1/orders", json=body, headers={"Authorization": f"Bearer {tokens['ingest']}"})
    assert resp.status_code == 422
    assert resp.headers["content-type"].startswith("application/problem+json")
    problem = resp.json()
    assert problem["status"] == 422 and problem["title"]
    assert named in [e["path"] for e in problem["errors"]], problem
    assert row_counts(db_url) == before


def test_broken_json_is_a_400_problem(
    api: tuple[TestClient, dict[str, str], OrderFactory], db_url: str
) -> None:
    client, tokens, _ = api
    before = row_counts(db_url)
    resp = client.post(
        "/v1/orders",
        content=b'{"channel": "web", "lines": [',
        headers={"Authorization": f"Bearer {tokens['ingest']}", "Content-Type": "application/json"},
    )
    assert resp.status_code == 400
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert "not valid JSON" in resp.json()["detail"]
    assert row_counts(db_url) == before


def oversized(factory: OrderFactory) -> dict[str, Any]:
    body = factory.order()
    body["customer"]["name"] = "x" * (1024 * 1024 + 10)
    return body


def test_body_over_one_mebibyte_is_refused_with_413(
    api: tuple[TestClient, dict[str, str], OrderFactory], db_url: str
) -> None:
    client, tokens, factory = api
    before = row_counts(db_url)
    resp = client.post(
        "/v1/orders", json=oversized(factory), headers={"Authorization": f"Bearer {tokens['ingest']}"}
    )
    assert resp.status_code == 413
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert row_counts(db_url) == before


def test_a_chunked_body_over_the_limit_is_refused_with_413_like_a_declared_one(
    api: tuple[TestClient, dict[str, str], OrderFactory], db_url: str
) -> None:
    client, tokens, factory = api
    before = row_counts(db_url)
    raw = json.dumps(oversized(factory)).encode()

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit can only be counted
        for i in range(0, len(raw), 64 * 1024):
            yield raw[i : i + 64 * 1024]

    resp = client.post(
        "/v1/orders",
        content=chunks(),
        headers={"Authorization": f"Bearer {tokens['ingest']}", "Content-Type": "application/json"},
    )
    assert resp.status_code == 413, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert row_counts(db_url) == before


def test_json_that_is_not_an_object_is_refused(api: tuple[TestClient, dict[str, str], OrderFactory]) -> None:
    client, tokens, _ = api
    resp = client.post("/v1/orders", json=[1, 2], headers={"Authorization": f"Bearer {tokens['ingest']}"})
    assert resp.status_code == 422
    assert resp.headers["content-type"].startswith("application/problem+json")


def test_intake_needs_a_token_with_the_ingest_role(
    api: tuple[TestClient, dict[str, str], OrderFactory], db_url: str
) -> None:
    client, tokens, factory = api
    before = row_counts(db_url)
    missing = client.post("/v1/orders", json=factory.order())
    wrong = client.post("/v1/orders", json=factory.order(), headers={"Authorization": "Bearer drctl_nope"})
    viewer = client.post(
        "/v1/orders", json=factory.order(), headers={"Authorization": f"Bearer {tokens['viewer']}"}
    )
    assert (missing.status_code, wrong.status_code, viewer.status_code) == (401, 401, 403)
    assert missing.headers["www-authenticate"] == "Bearer"
    assert all(
        r.headers["content-type"].startswith("application/problem+json") for r in (missing, wrong, viewer)
    )
    assert row_counts(db_url) == before


def test_unknown_order_is_a_404_problem(api: tuple[TestClient, dict[str, str], OrderFactory]) -> None:
    client, tokens, _ = api
    resp = client.get("/v1/orders/nope", headers={"Authorization": f"Bearer {tokens['viewer']}"})
    assert resp.status_code == 404
    assert resp.json()["title"] == "Not found"


def test_ops_endpoints_answer_without_a_token(api: tuple[TestClient, dict[str, str], OrderFactory]) -> None:
    client, _, _ = api
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert "drctl_routing_seconds_bucket" in metrics.text


def test_idempotency_key_on_intake_replays_the_first_answer(
    api: tuple[TestClient, dict[str, str], OrderFactory], db_url: str
) -> None:
    client, tokens, factory = api
    headers = {"Authorization": f"Bearer {tokens['ingest']}", "Idempotency-Key": "batch-7-line-1"}
    body = factory.order()
    first = client.post("/v1/orders", json=body, headers=headers)
    # a client retrying the same request with the same key gets the first answer
    again = client.post("/v1/orders", json=body, headers=headers)
    assert again.json()["id"] == first.json()["id"] and again.status_code == first.status_code
    assert again.headers["Idempotent-Replay"] == "true"
    # the key reused for another order is refused, naming the key; the other order is not taken
    other = client.post("/v1/orders", json=factory.order(), headers=headers)
    assert other.status_code == 422, other.text
    assert "batch-7-line-1" in other.json()["detail"]
    assert row_counts(db_url)[0] == 1


def test_same_order_key_with_another_body_is_a_409_naming_the_key(
    api: tuple[TestClient, dict[str, str], OrderFactory], db_url: str
) -> None:
    client, tokens, factory = api
    auth = {"Authorization": f"Bearer {tokens['ingest']}"}
    body = factory.order()
    first = client.post("/v1/orders", json=body, headers=auth)
    assert first.status_code in (201, 202), first.text
    # the same body again: the first order, nothing new
    same = client.post("/v1/orders", json=body, headers=auth)
    assert same.status_code == 200 and same.json()["id"] == first.json()["id"]
    # another body under the same (channel, external_id): refused, not silently dropped
    changed = with_change(body, ("lines", 0, "qty"), body["lines"][0]["qty"] + 1)
    clash = client.post("/v1/orders", json=changed, headers=auth)
    assert clash.status_code == 409, clash.text
    problem = clash.json()
    assert problem["rule"] == "order_key_reused" and body["external_id"] in problem["detail"]
    assert row_counts(db_url)[0] == 1
    kept = client.get(f"/v1/orders/{first.json()['id']}", headers=auth).json()
    assert kept["lines"][0]["qty"] == body["lines"][0]["qty"]

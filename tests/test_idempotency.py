"""Idempotency-Key is bound to method, path and body: a repeat replays, a reuse for another request is 422."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from control_plane.app import create_app
from control_plane.settings import Settings
from control_plane.store.tables import (
    AuditEventRow,
    BiaRunRow,
    IdempotencyKeyRow,
    IncidentRow,
    SilenceRow,
    SiteChangeRow,
)
from control_plane.web import idempotency
from control_plane.world.loader import load_world_file

from harness import SAMPLE_WORLD, engine_for, prepare_database


@pytest.fixture
def api(db_url: str) -> Iterator[tuple[TestClient, dict[str, str]]]:
    world, _ = load_world_file(SAMPLE_WORLD)
    tokens = prepare_database(db_url, world)
    with TestClient(create_app(Settings(database_url=db_url, background_jobs=False))) as client:
        yield client, tokens


def rows(url: str, table: Any) -> int:
    engine = engine_for(url)
    with engine.connect() as c:
        n = c.scalar(select(func.count()).select_from(table)) or 0
    engine.dispose()
    return n


def with_key(client: TestClient, tokens: dict[str, str], key: str, path: str, body: Any) -> Any:
    headers = {"Authorization": f"Bearer {tokens['operator']}", "Idempotency-Key": key}
    return client.post(path, json=body, headers=headers)


def accepting(client: TestClient, tokens: dict[str, str], code: str) -> bool:
    site = client.get(f"/v1/sites/{code}", headers={"Authorization": f"Bearer {tokens['viewer']}"})
    return bool(site.json()["accepting"])


def assert_key_reused(resp: Any, key: str) -> None:
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert "Idempotent-Replay" not in resp.headers
    detail = resp.json()["detail"]
    assert repr(key) in detail and "another request" in detail


# --- the request hash -------------------------------------------------------------------------------


def test_the_request_hash_ignores_whitespace_and_key_order() -> None:
    compact = idempotency.request_hash("POST", "/v1/sites/busan/failover", b'{"reason":"fire","force":true}')
    spaced = idempotency.request_hash(
        "POST", "/v1/sites/busan/failover", b'{\n  "force": true,\n  "reason": "fire"\n}'
    )
    assert compact == spaced and len(compact) == 64


def test_the_request_hash_differs_by_method_path_and_body() -> None:
    body = b'{"reason":"fire"}'
    first = idempotency.request_hash("POST", "/v1/sites/busan/failover", body)
    assert first != idempotency.request_hash("PUT", "/v1/sites/busan/failover", body)
    assert first != idempotency.request_hash("POST", "/v1/sites/icheon/failover", body)
    assert first != idempotency.request_hash("POST", "/v1/sites/busan/failover", b'{"reason":"flood"}')


# --- failover and failback --------------------------------------------------------------------------


def test_the_same_failover_with_the_same_key_is_performed_once(api: Any, db_url: str) -> None:
    client, tokens = api
    first = with_key(client, tokens, "op-1", "/v1/sites/busan/failover", {"reason": "fire"})
    again = with_key(client, tokens, "op-1", "/v1/sites/busan/failover", {"reason": "fire"})
    assert first.status_code == again.status_code == 200, again.text
    assert again.headers.get("Idempotent-Replay") == "true" and again.json() == first.json()
    assert rows(db_url, AuditEventRow) == 1 and rows(db_url, IncidentRow) == 1


def test_a_repeat_sent_with_other_whitespace_and_key_order_replays(api: Any, db_url: str) -> None:
    client, tokens = api
    headers = {
        "Authorization": f"Bearer {tokens['operator']}",
        "Idempotency-Key": "op-2",
        "Content-Type": "application/json",
    }
    path = "/v1/sites/busan/failover"
    first = client.post(path, content=json.dumps({"reason": "fire", "force": False}), headers=headers)
    again = client.post(path, content='{ "force" : false ,\n "reason" : "fire" }', headers=headers)
    assert first.status_code == 200 and again.headers.get("Idempotent-Replay") == "true"
    assert rows(db_url, AuditEventRow) == 1


def test_the_key_reused_for_another_sites_failover_is_refused(api: Any, db_url: str) -> None:
    client, tokens = api
    assert with_key(client, tokens, "op-3", "/v1/sites/busan/failover", {"reason": "fire"}).status_code == 200
    # when the operator's script reuses the key for Icheon
    resp = with_key(client, tokens, "op-3", "/v1/sites/icheon/failover", {"reason": "fire"})
    # then it is refused and Icheon was not touched
    assert_key_reused(resp, "op-3")
    assert accepting(client, tokens, "icheon")
    assert rows(db_url, AuditEventRow) == 1 and rows(db_url, SiteChangeRow) == 1


def test_the_key_of_a_failover_reused_for_the_failback_is_refused(api: Any, db_url: str) -> None:
    client, tokens = api
    first = with_key(client, tokens, "op-4", "/v1/sites/gwangju/failover", {"reason": "flood"})
    assert first.status_code == 200
    body = {"reason": "water gone", "force": True}
    resp = with_key(client, tokens, "op-4", "/v1/sites/gwangju/failback", body)
    assert_key_reused(resp, "op-4")
    assert not accepting(client, tokens, "gwangju")
    assert rows(db_url, SiteChangeRow) == 1


def test_the_key_reused_with_another_reason_is_refused(api: Any, db_url: str) -> None:
    client, tokens = api
    assert with_key(client, tokens, "op-5", "/v1/sites/busan/failover", {"reason": "fire"}).status_code == 200
    resp = with_key(client, tokens, "op-5", "/v1/sites/busan/failover", {"reason": "flood"})
    assert_key_reused(resp, "op-5")
    assert rows(db_url, AuditEventRow) == 1


def test_a_key_stored_without_a_hash_is_compared_on_method_and_path(api: Any, db_url: str) -> None:
    client, tokens = api
    assert with_key(client, tokens, "op-6", "/v1/sites/busan/failover", {"reason": "fire"}).status_code == 200
    # given the key was stored before requests were hashed
    engine = engine_for(db_url)
    with engine.begin() as c:
        c.execute(update(IdempotencyKeyRow).values(request_hash=None))
    engine.dispose()
    # then the same method and path replays whatever the body, and another path is refused
    same_path = with_key(client, tokens, "op-6", "/v1/sites/busan/failover", {"reason": "flood"})
    assert same_path.status_code == 200 and same_path.headers.get("Idempotent-Replay") == "true"
    other_path = with_key(client, tokens, "op-6", "/v1/sites/icheon/failover", {"reason": "fire"})
    assert_key_reused(other_path, "op-6")
    assert rows(db_url, AuditEventRow) == 1 and accepting(client, tokens, "icheon")


def test_the_stored_answer_keeps_its_request_hash(api: Any, db_url: str) -> None:
    client, tokens = api
    body = {"reason": "fire"}
    assert with_key(client, tokens, "op-7", "/v1/sites/busan/failover", body).status_code == 200
    engine = engine_for(db_url)
    with engine.connect() as c:
        stored = c.scalar(select(IdempotencyKeyRow.request_hash))
    engine.dispose()
    assert stored == idempotency.request_hash("POST", "/v1/sites/busan/failover", json.dumps(body).encode())


# --- silences and BIA runs --------------------------------------------------------------------------


def silence(comment: str) -> dict[str, Any]:
    return {"matchers": [{"name": "site", "value": "icheon"}], "duration_s": 3600, "comment": comment}


def test_a_silence_key_reused_with_another_body_is_refused(api: Any, db_url: str) -> None:
    client, tokens = api
    first = with_key(client, tokens, "s-1", "/v1/silences", silence("planned work"))
    again = with_key(client, tokens, "s-1", "/v1/silences", silence("planned work"))
    assert first.status_code == again.status_code == 201 and again.headers.get("Idempotent-Replay") == "true"
    assert_key_reused(with_key(client, tokens, "s-1", "/v1/silences", silence("other work")), "s-1")
    assert rows(db_url, SilenceRow) == 1


def test_a_bia_run_key_reused_with_another_body_is_refused(api: Any, db_url: str) -> None:
    client, tokens = api
    first = with_key(client, tokens, "b-1", "/v1/bia/runs", {"days": 7})
    again = with_key(client, tokens, "b-1", "/v1/bia/runs", {"days": 7})
    assert first.status_code == again.status_code == 202 and again.json()["id"] == first.json()["id"]
    assert_key_reused(with_key(client, tokens, "b-1", "/v1/bia/runs", {"days": 28}), "b-1")
    assert rows(db_url, BiaRunRow) == 1


def test_the_key_of_a_silence_reused_for_a_failover_is_refused(api: Any, db_url: str) -> None:
    client, tokens = api
    assert with_key(client, tokens, "k-1", "/v1/silences", silence("planned work")).status_code == 201
    assert_key_reused(with_key(client, tokens, "k-1", "/v1/sites/busan/failover", {"reason": "fire"}), "k-1")
    assert accepting(client, tokens, "busan") and rows(db_url, SiteChangeRow) == 0

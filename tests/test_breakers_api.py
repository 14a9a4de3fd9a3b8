"""Operator overrides of breakers over HTTP: held open, closed, reset; refused when mistyped."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from test_operations_api import counts, make_api, post

from control_plane.store.tables import AuditEventRow

from harness import engine_for

__all__ = ["make_api"]  # the fixture, imported for pytest


def breakers(client: Any, token: str) -> dict[str, dict[str, Any]]:
    resp = client.get("/v1/breakers", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200
    return {b["name"]: b for b in resp.json()}


def audit_rows(url: str) -> list[tuple[str, str, str | None, str | None]]:
    engine = engine_for(url)
    with engine.connect() as c:
        rows = c.execute(
            select(AuditEventRow.action, AuditEventRow.subject, AuditEventRow.actor, AuditEventRow.reason)
            .where(AuditEventRow.action.like("breaker.%"))
            .order_by(AuditEventRow.id)
        ).all()
    engine.dispose()
    return [tuple(r) for r in rows]


def test_open_holds_the_breaker_and_is_audited(make_api: Any, db_url: str) -> None:
    client, tokens = make_api(breaker_reset_timeout_s=0)
    resp = post(client, tokens["operator"], "/v1/breakers/icheon/open", reason="flooded, do not try")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"name": "icheon", "state": "open", "held": True, "fail_counter": 0, "in_flight": 0}
    # held past its reset timeout (0 s here): still open, not half-open, on the next read
    assert breakers(client, tokens["viewer"])["icheon"]["state"] == "open"
    site = client.get("/v1/sites/icheon", headers={"Authorization": f"Bearer {tokens['viewer']}"}).json()
    assert site["breaker"] == "open"
    [(action, subject, actor, reason)] = audit_rows(db_url)
    assert (action, subject, reason) == ("breaker.open", "breaker:icheon", "flooded, do not try")
    assert actor.startswith("test-operator")


def test_reset_ends_the_hold_with_a_trial_and_close_closes(make_api: Any, db_url: str) -> None:
    client, tokens = make_api()
    op = tokens["operator"]
    post(client, op, "/v1/breakers/busan/open", reason="carrier says so")
    reset = post(client, op, "/v1/breakers/busan/reset", reason="back, let one call decide")
    assert reset.status_code == 200
    assert (reset.json()["state"], reset.json()["held"]) == ("half-open", False)
    closed = post(client, op, "/v1/breakers/busan/close", reason="confirmed healthy")
    assert (closed.json()["state"], closed.json()["held"]) == ("closed", False)
    assert [r[0] for r in audit_rows(db_url)] == ["breaker.open", "breaker.reset", "breaker.close"]


def test_mistakes_change_nothing(make_api: Any, db_url: str) -> None:
    client, tokens = make_api()
    op = tokens["operator"]
    before, names = counts(db_url), set(breakers(client, tokens["viewer"]))
    cases = {
        ("/v1/breakers/icheonn/open", "the name"): 404,  # a typo never creates a breaker
        ("/v1/breakers/icheon/opne", "the action"): 422,
        ("/v1/breakers/icheon/open", "no reason"): 422,
        ("/v1/breakers/icheon/open", "unknown field"): 422,
    }
    for (path, case), status in cases.items():
        body: dict[str, Any] = {"reason": "typo test"}
        if case == "no reason":
            body = {}
        if case == "unknown field":
            body = {"reason": "typo test", "hold_for": "1h"}
        resp = post(client, op, path, **body)
        assert resp.status_code == status, (case, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json"), case
    viewer = post(client, tokens["viewer"], "/v1/breakers/icheon/open", reason="not mine to do")
    assert viewer.status_code == 403
    anonymous = client.post("/v1/breakers/icheon/open", json={"reason": "who am I"})
    assert anonymous.status_code == 401
    after = breakers(client, tokens["viewer"])
    assert set(after) == names
    assert after["icheon"]["state"] == "closed"
    assert counts(db_url) == before

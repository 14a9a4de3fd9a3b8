"""Alertmanager's webhook and the silences API in-process, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from control_plane.app import create_app
from control_plane.settings import Settings
from control_plane.store.tables import AuditEventRow, IncidentRow, SilenceRow, SiteRow
from control_plane.world.loader import load_world_file

from harness import SAMPLE_WORLD, engine_for, prepare_database


@pytest.fixture
def api(db_url: str) -> Iterator[tuple[TestClient, dict[str, str]]]:
    world, _ = load_world_file(SAMPLE_WORLD)
    tokens = prepare_database(db_url, world)
    with TestClient(create_app(Settings(database_url=db_url, background_jobs=False))) as client:
        yield client, tokens


def am_payload(status: str, alertname: str = "SiteDown", fp: str = "7a26696272cf5498", **labels: str) -> Any:
    """Alertmanager's webhook body (version 4), as observed from prometheus-alertmanager 0.25."""
    labels = {"alertname": alertname, "severity": "critical", **(labels or {"site": "icheon"})}
    alert = {
        "status": status,
        "labels": labels,
        "annotations": {"summary": "DC icheon is down", "description": "..."},
        "startsAt": "2026-12-01T07:37:21.247Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-12-01T07:40:02.100Z",
        "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=...",
        "fingerprint": fp,
    }
    return {
        "receiver": "drctl",
        "status": status,
        "alerts": [alert],
        "groupLabels": labels,
        "commonLabels": labels,
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://127.0.0.1:9093",
        "version": "4",
        "groupKey": '{}:{alertname="SiteDown", site="icheon"}',
        "truncatedAlerts": 0,
    }


def hook(client: TestClient, token: str, body: Any) -> Any:
    return client.post("/v1/hooks/alertmanager", json=body, headers={"Authorization": f"Bearer {token}"})


def incidents(url: str) -> list[tuple[str, str, str]]:
    engine = engine_for(url)
    with engine.connect() as c:
        rows = c.execute(select(IncidentRow.subject, IncidentRow.trigger, IncidentRow.status)).all()
    engine.dispose()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def count(url: str, table: Any) -> int:
    engine = engine_for(url)
    with engine.connect() as c:
        n = c.scalar(select(func.count()).select_from(table)) or 0
    engine.dispose()
    return n


def test_firing_site_down_opens_one_incident_and_its_resolve_closes_it(api: Any, db_url: str) -> None:
    client, tokens = api
    first = hook(client, tokens["hook"], am_payload("firing"))
    assert first.status_code == 200
    assert first.json()["outcomes"][0]["action"] == "opened"
    # Alertmanager re-sends a firing group every repeat_interval: nothing new
    again = hook(client, tokens["hook"], am_payload("firing"))
    assert again.json()["outcomes"][0]["action"] == "repeat"
    assert incidents(db_url) == [("icheon", "alert", "open")]
    done = hook(client, tokens["hook"], am_payload("resolved"))
    assert done.json()["outcomes"][0]["action"] == "resolved_incident"
    assert incidents(db_url) == [("icheon", "alert", "resolved")]


def test_resolve_leaves_a_failed_over_site_open_until_failback(api: Any, db_url: str) -> None:
    client, tokens = api
    hook(client, tokens["hook"], am_payload("firing"))
    engine = engine_for(db_url)
    with engine.begin() as c:
        c.execute(update(SiteRow).where(SiteRow.code == "icheon").values(accepting=False))
    engine.dispose()
    done = hook(client, tokens["hook"], am_payload("resolved"))
    assert done.json()["outcomes"][0]["action"] == "resolved_event"
    assert incidents(db_url) == [("icheon", "alert", "open")]


def test_an_incident_stays_open_while_another_of_its_alerts_fires(api: Any, db_url: str) -> None:
    client, tokens = api
    hook(client, tokens["hook"], am_payload("firing"))
    hook(client, tokens["hook"], am_payload("firing", "BreakerOpen", "b0000000000000001", breaker="icheon"))
    hook(client, tokens["hook"], am_payload("resolved"))
    assert incidents(db_url) == [("icheon", "alert", "open")]
    hook(client, tokens["hook"], am_payload("resolved", "BreakerOpen", "b0000000000000001", breaker="icheon"))
    assert incidents(db_url) == [("icheon", "alert", "resolved")]


def test_alerts_without_a_subject_are_acknowledged_and_change_nothing(api: Any, db_url: str) -> None:
    client, tokens = api
    before = count(db_url, AuditEventRow)
    resp = hook(client, tokens["hook"], am_payload("firing", "SomeoneElsesAlert", "c000000000000001", x="y"))
    assert resp.status_code == 200 and resp.json()["outcomes"][0]["action"] == "ignored"
    assert incidents(db_url) == [] and count(db_url, AuditEventRow) == before


def test_the_hook_needs_its_own_token_and_a_valid_payload(api: Any, db_url: str) -> None:
    client, tokens = api
    assert client.post("/v1/hooks/alertmanager", json=am_payload("firing")).status_code == 401
    # a sales channel's ingest token cannot open or resolve incidents, nor can an operator's
    for role in ("viewer", "ingest", "operator"):
        assert hook(client, tokens[role], am_payload("firing")).status_code == 403, role
    assert incidents(db_url) == []
    broken = am_payload("firing")
    broken["alerts"][0]["status"] = "exploded"
    resp = hook(client, tokens["hook"], broken)
    assert resp.status_code == 422 and resp.json()["errors"][0]["path"] == "alerts[0].status"
    assert incidents(db_url) == []


def test_a_silence_is_created_listed_and_expired_with_an_audit_trail(api: Any, db_url: str) -> None:
    client, tokens = api
    auth = {"Authorization": f"Bearer {tokens['operator']}"}
    body = {"matchers": [{"name": "site", "value": "icheon"}], "duration_s": 3600, "comment": "planned work"}
    created = client.post("/v1/silences", json=body, headers={**auth, "Idempotency-Key": "s-1"})
    assert created.status_code == 201 and created.json()["state"] == "active"
    replayed = client.post("/v1/silences", json=body, headers={**auth, "Idempotency-Key": "s-1"})
    assert replayed.json()["id"] == created.json()["id"] and count(db_url, SilenceRow) == 1
    listed = client.get("/v1/silences", headers=auth).json()
    assert [s["id"] for s in listed] == [created.json()["id"]]
    expired = client.delete(f"/v1/silences/{created.json()['id']}", headers=auth)
    assert expired.status_code == 200 and expired.json()["state"] == "expired"
    assert client.get("/v1/silences", headers=auth).json() == []
    assert client.delete(f"/v1/silences/{created.json()['id']}", headers=auth).status_code == 409
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    actions = [a["action"] for a in client.get("/v1/audit", headers=admin).json()]
    assert actions.count("silence.create") == 1 and actions.count("silence.expire") == 1


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"matchers": [{"name": "site", "value": "ich(", "isRegex": True}], "duration_s": 60}, "value"),
        ({"matchers": [], "duration_s": 60}, "matchers"),
        ({"matchers": [{"name": "site", "value": "x"}]}, "(body)"),
        ({"matchers": [{"name": "site", "value": "x"}], "duration_s": -5}, "duration_s"),
        (
            {
                "matchers": [{"name": "site", "value": "x"}],
                "startsAt": "2026-12-01T05:00:00Z",
                "endsAt": "2026-12-01T04:00:00Z",
            },
            "ends_at",
        ),
    ],
)
def test_a_bad_silence_is_refused_naming_the_field_and_nothing_is_written(
    api: Any, db_url: str, body: dict[str, Any], path: str
) -> None:
    client, tokens = api
    resp = client.post(
        "/v1/silences",
        json={"comment": "why not", **body},
        headers={"Authorization": f"Bearer {tokens['operator']}"},
    )
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["errors"][0]["path"] == path, resp.json()
    assert count(db_url, SilenceRow) == 0


def test_silences_need_the_operator_role(api: Any) -> None:
    client, tokens = api
    body = {"matchers": [{"name": "site", "value": "x"}], "duration_s": 60, "comment": "why not"}
    resp = client.post("/v1/silences", json=body, headers={"Authorization": f"Bearer {tokens['viewer']}"})
    assert resp.status_code == 403


def test_an_alert_time_without_a_timezone_is_refused(api: Any, db_url: str) -> None:
    client, tokens = api
    body = am_payload("firing")
    body["alerts"][0]["startsAt"] = "2026-12-01T07:37:21"
    resp = hook(client, tokens["hook"], body)
    assert resp.status_code == 422 and resp.json()["errors"][0]["path"] == "alerts[0].startsAt"
    assert incidents(db_url) == []

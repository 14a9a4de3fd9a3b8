"""Operator inputs refuse unknown fields (a typo is a 422 naming it); the hook tolerates them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from control_plane.app import create_app
from control_plane.settings import Settings
from control_plane.store.tables import AuditEventRow, BiaRunRow, IncidentRow, SilenceRow, SiteChangeRow
from control_plane.world.loader import load_world_file

from harness import SAMPLE_WORLD, engine_for, prepare_database

WRITES = (AuditEventRow, SiteChangeRow, IncidentRow, SilenceRow, BiaRunRow)


@pytest.fixture
def api(db_url: str) -> Iterator[tuple[TestClient, dict[str, str]]]:
    world, _ = load_world_file(SAMPLE_WORLD)
    tokens = prepare_database(db_url, world)
    with TestClient(create_app(Settings(database_url=db_url, background_jobs=False))) as client:
        yield client, tokens


def written(url: str) -> dict[str, int]:
    """How many rows every table a POST may write holds."""
    engine = engine_for(url)
    with engine.connect() as c:
        n = {t.__tablename__: c.scalar(select(func.count()).select_from(t)) or 0 for t in WRITES}
    engine.dispose()
    return n


def post(client: TestClient, token: str, path: str, body: Any) -> Any:
    return client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})


def accepting(client: TestClient, tokens: dict[str, str], code: str) -> bool:
    site = client.get(f"/v1/sites/{code}", headers={"Authorization": f"Bearer {tokens['viewer']}"})
    return bool(site.json()["accepting"])


def assert_refused_naming(resp: Any, field: str) -> None:
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    problem = resp.json()
    assert [e["path"] for e in problem["errors"]] == [field]
    assert problem["detail"].startswith(f"{field}:")


def test_failover_with_a_typo_for_dry_run_is_refused_and_fails_nothing_over(api: Any, db_url: str) -> None:
    client, tokens = api
    before = written(db_url)
    # when an operator means a dry run but types `dryrun`
    resp = post(client, tokens["operator"], "/v1/sites/busan/failover", {"reason": "drill", "dryrun": True})
    # then it is refused, naming the field, and Busan still takes orders: nothing was written
    assert_refused_naming(resp, "dryrun")
    assert accepting(client, tokens, "busan")
    assert written(db_url) == before


def test_failback_with_an_unknown_field_is_refused_and_the_site_stays_out(api: Any, db_url: str) -> None:
    client, tokens = api
    failed_over = post(client, tokens["operator"], "/v1/sites/gwangju/failover", {"reason": "flood"})
    assert failed_over.status_code == 200
    before = written(db_url)
    body = {"reason": "water gone", "forse": True}
    resp = post(client, tokens["operator"], "/v1/sites/gwangju/failback", body)
    assert_refused_naming(resp, "forse")
    assert not accepting(client, tokens, "gwangju")
    assert written(db_url) == before


def test_silence_with_a_field_we_do_not_take_is_refused(api: Any, db_url: str) -> None:
    client, tokens = api
    before = written(db_url)
    # amtool's silence carries `createdBy`; here the author is the token, so the field is refused
    body = {
        "matchers": [{"name": "site", "value": "icheon"}],
        "duration_s": 3600,
        "comment": "planned work",
        "createdBy": "kim",
    }
    assert_refused_naming(post(client, tokens["operator"], "/v1/silences", body), "createdBy")
    assert written(db_url) == before


def test_silence_matcher_with_an_unknown_field_is_refused(api: Any, db_url: str) -> None:
    client, tokens = api
    body = {
        "matchers": [{"name": "site", "value": "ic.*", "isRegexp": True}],
        "duration_s": 3600,
        "comment": "planned work",
    }
    assert_refused_naming(post(client, tokens["operator"], "/v1/silences", body), "matchers[0].isRegexp")
    assert written(db_url)["silences"] == 0


def test_bia_run_with_a_typo_is_refused_and_starts_no_run(api: Any, db_url: str) -> None:
    client, tokens = api
    before = written(db_url)
    assert_refused_naming(post(client, tokens["operator"], "/v1/bia/runs", {"day": 7}), "day")
    assert written(db_url) == before


def alertmanager_payload(**extra: Any) -> dict[str, Any]:
    """Every field of Alertmanager's webhook (version 4), as its documentation lists them."""
    labels = {"alertname": "SiteDown", "severity": "critical", "site": "icheon"}
    return {
        "version": "4",
        "groupKey": '{}:{alertname="SiteDown"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "drctl",
        "groupLabels": {"alertname": "SiteDown"},
        "commonLabels": labels,
        "commonAnnotations": {"summary": "DC icheon is down"},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": "DC icheon is down"},
                "startsAt": "2026-12-01T07:37:21.247Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=up",
                "fingerprint": "7a26696272cf5498",
            }
        ],
        **extra,
    }


def test_the_alertmanager_hook_takes_every_documented_field(api: Any) -> None:
    client, tokens = api
    resp = post(client, tokens["hook"], "/v1/hooks/alertmanager", alertmanager_payload())
    assert resp.status_code == 200, resp.text
    assert resp.json()["outcomes"][0]["action"] == "opened"


def test_the_alertmanager_hook_tolerates_fields_a_newer_alertmanager_adds(api: Any) -> None:
    # Alertmanager does not retry a 4xx: refusing an addition would drop every alert after an upgrade
    client, tokens = api
    body = alertmanager_payload(newField={"x": 1})
    body["alerts"][0]["silencedBy"] = []
    resp = post(client, tokens["hook"], "/v1/hooks/alertmanager", body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["received"] == 1

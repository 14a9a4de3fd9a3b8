"""Input no client should send, sent anyway: control characters in URLs and bodies, on every store.

PostgreSQL cannot hold NUL; before these guards a NUL in an id reached it and came back as a 500.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from control_plane.app import create_app
from control_plane.settings import Settings
from control_plane.web.inputs import control_character

from harness import prepare_database, write_test_world


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    world, _ = write_test_world(tmp_path / "world.yaml")
    issued = prepare_database(db_url, world)
    with TestClient(create_app(Settings(database_url=db_url, background_jobs=False))) as client:
        yield client, issued


@pytest.mark.parametrize(
    "url",
    ["/v1/orders/ord%00x", "/v1/orders?site=ic%00heon", "/v1/sites/ic%1bheon", "/v1/notices?order=a%7f"],
)
def test_a_control_character_in_the_url_is_a_400_problem(
    api: tuple[TestClient, dict[str, str]], url: str
) -> None:
    client, issued = api
    resp = client.get(url, headers={"Authorization": f"Bearer {issued['viewer']}"})
    assert resp.status_code == 400, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert "control character" in resp.json()["detail"]


SILENCE = {"matchers": [{"name": "site", "value": "ich\x00eon"}], "duration_s": 60, "comment": "works"}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/sites/icheon/failover", {"reason": "flood\x00", "dry_run": True}, "reason"),
        ("/v1/silences", SILENCE, "matchers[0].value"),
        ("/v1/breakers/icheon/open", {"reason": "test\x1b[2J"}, "reason"),
    ],
)
def test_a_control_character_in_a_body_is_a_422_naming_the_field(
    api: tuple[TestClient, dict[str, str]], path: str, body: dict[str, object], field: str
) -> None:
    client, issued = api
    resp = client.post(path, json=body, headers={"Authorization": f"Bearer {issued['operator']}"})
    assert resp.status_code == 422, resp.text
    assert field in [e["path"] for e in resp.json()["errors"]]


def test_free_text_keeps_its_line_breaks_and_tabs() -> None:
    assert control_character("two lines\nand a\ttab\r\n") is None
    assert control_character({"k": ["ok", "bell\x07"]}) == "\x07"
    assert control_character({"n\x00": "key"}) == "\x00"

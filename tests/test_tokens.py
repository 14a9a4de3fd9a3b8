"""Tokens as a careless or hostile client meets them: expiry, channel binding, the hook's own role,
made-up tokens rate-limited per address, and a token cache they cannot flood; the CLI's list/revoke."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from chaos.order_stream import OrderFactory
from control_plane.app import create_app
from control_plane.auth import repository as tokens
from control_plane.auth.deps import Principal, TokenCache
from control_plane.settings import Settings
from control_plane.store.db import make_session_factory
from control_plane.store.tables import ApiTokenRow, AuditEventRow

from harness import engine_for, prepare_database, write_test_world

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str], OrderFactory]]:
    world, _ = write_test_world(tmp_path / "world.yaml")
    issued = prepare_database(db_url, world)
    settings = Settings(database_url=db_url, background_jobs=False, auth_failure_burst=5)
    with TestClient(create_app(settings)) as client:
        yield client, issued, OrderFactory(world, seed=3)


def issue(url: str, role: str, **kw: Any) -> str:
    engine = engine_for(url)
    try:
        with make_session_factory(engine).begin() as s:
            now = datetime.now(UTC)
            return tokens.create_token(s, f"{role}-{now:%H%M%S%f}", role, now, **kw)
    finally:
        engine.dispose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_an_ingest_token_bound_to_a_channel_posts_for_it_and_is_refused_for_another(
    api: tuple[TestClient, dict[str, str], OrderFactory], db_url: str
) -> None:
    client, issued, factory = api
    coupang = issue(db_url, "ingest", channels=["coupang"])
    taken = client.post("/v1/orders", json=factory.order(channel="coupang"), headers=bearer(coupang))
    assert taken.status_code in (201, 202), taken.text
    other = client.post("/v1/orders", json=factory.order(channel="web"), headers=bearer(coupang))
    assert other.status_code == 403 and "coupang" in other.json()["detail"]
    # nor may it cancel another channel's order; an unbound ingest token may
    web = client.post("/v1/orders", json=factory.order(channel="web"), headers=bearer(issued["ingest"]))
    web_id, own_id = web.json()["id"], taken.json()["id"]
    cancel = client.post(f"/v1/orders/{web_id}/cancel", json={"reason": "x"}, headers=bearer(coupang))
    assert cancel.status_code == 403, cancel.text
    still = client.get(f"/v1/orders/{web_id}", headers=bearer(issued["viewer"])).json()
    assert still["status"] != "cancelled"
    own = client.post(f"/v1/orders/{own_id}/cancel", json={"reason": "x"}, headers=bearer(coupang))
    assert own.status_code == 200, own.text


def test_an_expired_token_is_refused(
    api: tuple[TestClient, dict[str, str], OrderFactory], db_url: str
) -> None:
    client, _, _ = api
    past = issue(db_url, "viewer", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    live = issue(db_url, "viewer", expires_at=datetime.now(UTC) + timedelta(days=1))
    assert client.get("/v1/sites", headers=bearer(past)).status_code == 401
    assert client.get("/v1/sites", headers=bearer(live)).status_code == 200
    engine = engine_for(db_url)
    with engine.connect() as c:
        used = c.execute(select(ApiTokenRow.name, ApiTokenRow.last_used_at)).all()
    engine.dispose()
    assert sum(1 for _, at in used if at is not None) >= 1  # the live one's use is noted


def test_made_up_tokens_are_rate_limited_per_address_and_valid_ones_keep_working(
    api: tuple[TestClient, dict[str, str], OrderFactory],
) -> None:
    client, issued, _ = api
    assert client.get("/v1/sites", headers=bearer(issued["viewer"])).status_code == 200
    answers = [client.get("/v1/sites", headers=bearer(f"drctl_guess{i}")).status_code for i in range(8)]
    assert answers[:5] == [401] * 5 and set(answers[5:]) == {429}, answers
    limited = client.get("/v1/sites", headers=bearer("drctl_guess-more"))
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert limited.headers["content-type"].startswith("application/problem+json")
    # a token this process has seen already is answered from its cache, not refused with the guesses
    assert client.get("/v1/sites", headers=bearer(issued["viewer"])).status_code == 200


def test_a_flood_of_unknown_tokens_cannot_push_a_valid_one_out_of_the_cache() -> None:
    cache = TokenCache(ttl_s=60, max_unknown=100)
    loads: list[str] = []

    def load(tok: str) -> Principal | None:
        loads.append(tok)
        return Principal("ops", "operator") if tok == "good" else None

    assert cache.lookup("good", load) is not None
    for i in range(10_000):
        cache.lookup(f"bad-{i}", load)
    loads.clear()
    assert cache.lookup("good", load) == Principal("ops", "operator") and loads == []
    assert len(cache._unknown) == 100  # bounded


def test_the_hook_token_opens_no_dashboard_session_and_reaches_nothing_else(
    api: tuple[TestClient, dict[str, str], OrderFactory],
) -> None:
    client, issued, factory = api
    hook = bearer(issued["hook"])
    assert client.get("/v1/sites", headers=hook).status_code == 403
    assert client.post("/v1/orders", json=factory.order(), headers=hook).status_code == 403
    login = client.post("/login", data={"token": issued["hook"]}, follow_redirects=False)
    assert login.status_code == 401 and "drctl_session" not in login.cookies
    viewer = client.post("/login", data={"token": issued["viewer"]}, follow_redirects=False)
    assert viewer.status_code == 303  # the same form opens a session for a viewer


def drctl(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DRCTL_DATABASE_URL": db_url}
    return subprocess.run(
        [sys.executable, "-m", "control_plane", "token", *args],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=60,
    )  # fmt: skip


def test_cli_creates_lists_and_revokes_tokens_without_ever_showing_a_secret(
    api: tuple[TestClient, dict[str, str], OrderFactory], db_url: str
) -> None:
    client, _, _ = api
    made = drctl(db_url, "create", "--role", "ingest", "--name", "coupang-feed", "--expires", "30d",
                 "--channel", "coupang", "--json")  # fmt: skip
    assert made.returncode == 0, made.stderr
    secret = json.loads(made.stdout)["token"]
    assert client.get("/v1/orders", headers=bearer(secret)).status_code == 200

    listed = drctl(db_url, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert secret not in listed.stdout and tokens.hash_token(secret) not in listed.stdout
    feed = next(t for t in json.loads(listed.stdout) if t["name"] == "coupang-feed")
    assert (feed["role"], feed["channels"], feed["live"]) == ("ingest", ["coupang"], True)
    assert feed["expires_at"] is not None

    revoked = drctl(db_url, "revoke", "coupang-feed", "--reason", "feed retired")
    assert revoked.returncode == 0, revoked.stderr
    again = drctl(db_url, "revoke", "coupang-feed", "--reason", "feed retired")
    assert again.returncode == 0 and "already" in again.stdout
    engine = engine_for(db_url)
    with engine.connect() as c:
        audited = c.scalars(
            select(AuditEventRow.action)
            .where(AuditEventRow.subject == "token:coupang-feed")
            .order_by(AuditEventRow.id)
        ).all()
    engine.dispose()
    assert audited == ["token.create", "token.revoke"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("revoke", "no-such-token", "--reason", "typo"), "no token named"),
        (("create", "--role", "ingest", "--expires", "30 days"), "--expires"),
        (("create", "--role", "ingest", "--expires", "99999999d"), "--expires"),
        (("create", "--role", "ingest", "--channel", "coupnag"), "coupnag"),
        (("create", "--role", "operator", "--channel", "coupang"), "--channel"),
        (("create", "--role", "root"), "--role"),
        (("create", "--role", "viewer", "--name", "bad\x1bname"), "--name"),
    ],
)
def test_cli_refuses_a_careless_token_command_with_one_line_and_writes_nothing(
    api: tuple[TestClient, dict[str, str], OrderFactory], db_url: str, args: tuple[str, ...], says: str
) -> None:
    engine = engine_for(db_url)
    with engine.connect() as c:
        before = c.scalars(select(ApiTokenRow.name)).all()
    result = drctl(db_url, *args)
    with engine.connect() as c:
        after = c.scalars(select(ApiTokenRow.name)).all()
    engine.dispose()
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert after == before

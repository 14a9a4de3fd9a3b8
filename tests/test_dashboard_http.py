"""The dashboard over HTTP without a browser: login cookie, CSRF, roles, typed confirmation."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from test_operations_api import counts, make_api

from control_plane.auth.web_sessions import COOKIE
from control_plane.dashboard.i18n import TEXT, negotiate
from control_plane.store.tables import AuditEventRow

from harness import engine_for, record_sample_bia

__all__ = ["make_api"]
ORIGIN = "http://testserver"


def log_in(client: TestClient, token: str) -> str:
    """Log in; the CSRF token of the page it lands on."""
    resp = client.post("/login", data={"token": token}, headers={"Origin": ORIGIN}, follow_redirects=False)
    assert resp.status_code == 303, resp.text
    page = client.get("/")
    assert page.status_code == 200
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert found, "no CSRF token on the page"
    return found.group(1)


def actions(db_url: str) -> list[str]:
    engine = engine_for(db_url)
    with engine.connect() as c:
        rows = list(c.scalars(select(AuditEventRow.action).order_by(AuditEventRow.id)))
    engine.dispose()
    return rows


def test_login_sets_a_strict_http_only_cookie_and_logout_ends_it(make_api: Any, db_url: str) -> None:
    client, tokens = make_api()
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    resp = client.post(
        "/login", data={"token": tokens["viewer"]}, headers={"Origin": ORIGIN}, follow_redirects=False
    )
    cookie = resp.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=drctls_")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert tokens["viewer"] not in cookie
    page = client.get("/")
    assert page.status_code == 200 and "icheon" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text).group(1)  # type: ignore[union-attr]
    out = client.post("/logout", data={"csrf": csrf}, headers={"Origin": ORIGIN}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/ui/board").status_code == 401
    assert actions(db_url)[-2:] == ["session.login", "session.logout"]


def test_a_bad_token_is_refused_and_opens_nothing(make_api: Any, db_url: str) -> None:
    client, _ = make_api()
    before = actions(db_url)
    for token in ("drctl_nope", "", "\x00", "x" * 150):
        resp = client.post("/login", data={"token": token}, headers={"Origin": ORIGIN})
        assert resp.status_code == 401, token
        assert COOKIE not in resp.headers.get("set-cookie", "")
    assert actions(db_url) == before


def test_a_viewer_sees_no_action_and_a_forged_post_is_refused(make_api: Any, db_url: str) -> None:
    client, tokens = make_api()
    csrf = log_in(client, tokens["viewer"])
    page = client.get("/").text
    assert "/failover" not in page and '<button type="submit">Reset' not in page
    before = counts(db_url)
    forged = client.post(
        "/ui/sites/icheon/failover",
        data={"csrf": csrf, "confirm": "icheon", "reason": "viewer forging a failover"},
        headers={"Origin": ORIGIN},
    )
    assert forged.status_code == 403
    assert client.get("/ui/sites/icheon/failover").status_code == 403
    assert counts(db_url) == before


@pytest.mark.parametrize(
    "case, data, headers, status",
    [
        ("no CSRF token", {"confirm": "icheon", "reason": "flood"}, {"Origin": ORIGIN}, 403),
        (
            "another session's token",
            {"csrf": "0" * 64, "confirm": "icheon", "reason": "flood"},
            {"Origin": ORIGIN},
            403,
        ),
        (
            "from another site",
            {"confirm": "icheon", "reason": "flood"},
            {"Origin": "https://evil.example"},
            403,
        ),
        ("a typo'd code", {"confirm": "icheom", "reason": "flood"}, {"Origin": ORIGIN}, 400),
        ("no reason", {"confirm": "icheon", "reason": ""}, {"Origin": ORIGIN}, 400),
    ],
)
def test_an_operator_post_that_is_not_quite_right_does_nothing(
    make_api: Any, db_url: str, case: str, data: dict[str, str], headers: dict[str, str], status: int
) -> None:
    client, tokens = make_api()
    csrf = log_in(client, tokens["operator"])
    if case not in ("no CSRF token", "another session's token"):
        data = {"csrf": csrf, **data}
    before = counts(db_url)
    resp = client.post("/ui/sites/icheon/failover", data=data, headers=headers, follow_redirects=False)
    assert resp.status_code == status, (case, resp.text[:300])
    assert counts(db_url) == before


def test_an_operator_sees_the_plan_then_fails_over_by_typing_the_code(make_api: Any, db_url: str) -> None:
    client, tokens = make_api()
    csrf = log_in(client, tokens["operator"])
    plan = client.get("/ui/sites/busan/failover")
    assert plan.status_code == 200
    assert 'id="orders-to-move"' in plan.text and "min_accepting_sites" in plan.text
    _, _, accepting = counts(db_url)
    done = client.post(
        "/ui/sites/busan/failover",
        data={"csrf": csrf, "confirm": "busan", "reason": "flood drill"},
        headers={"Origin": ORIGIN},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text[:500]
    assert counts(db_url)[2] == accepting - 1
    page = client.get("/").text
    assert "busan failed over" in page
    assert re.search(r'data-site="busan" class="alarm"', page)


def test_the_failover_plan_prices_every_option_and_marks_the_one_recommended(
    make_api: Any, db_url: str
) -> None:
    client, tokens = make_api()
    record_sample_bia(db_url)
    log_in(client, tokens["operator"])
    page = client.get("/ui/sites/gwangju/failover").text
    for option in ("default", "backup:daejeon", "backup:busan", "hold"):
        assert f'data-option="{option}"' in page
    recommended = re.search(r'data-option="([^"]+)" class="recommended"', page)
    assert recommended is not None and recommended.group(1) != "hold"
    assert 'id="recommendation"' in page and "KRW over the first hour" in page


def test_every_text_has_both_languages_and_the_page_follows_accept_language(make_api: Any) -> None:
    assert [k for k, (en, ko) in TEXT.items() if not en or not ko] == []
    assert negotiate("ko-KR,ko;q=0.9,en;q=0.8", None) == "ko"
    assert negotiate("en-US,ko;q=0.5", None) == "en"
    assert negotiate("fr, de;q=0.5", None) == "en"
    assert negotiate("ko", "en") == "en"  # the switch wins
    assert negotiate("ko;q=abc, en;q=0.1", None) == "en"
    client, tokens = make_api()
    log_in(client, tokens["viewer"])
    page = client.get("/", headers={"Accept-Language": "ko-KR"}).text
    assert '<html lang="ko">' in page and "사이트" in page
    client.get("/ui/lang/en")
    assert '<html lang="en">' in client.get("/", headers={"Accept-Language": "ko-KR"}).text


def test_text_from_the_store_is_escaped(make_api: Any, db_url: str) -> None:
    client, tokens = make_api()
    csrf = log_in(client, tokens["operator"])
    client.post(
        "/ui/sites/busan/failover",
        data={"csrf": csrf, "confirm": "busan", "reason": "<script>alert(1)</script> flood"},
        headers={"Origin": ORIGIN},
    )
    page = client.get("/").text
    assert "<script>alert(1)" not in page

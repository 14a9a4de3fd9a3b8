"""Expiring failovers (issue 16): a failover with `expires_in` proposes its failback once it has
passed (incident event, FailoverExpired alert) or, with policy `auto` and a healthy DC, fails back
with its ramp, audited. A real control plane (in-process, on a clock the test moves) and real
simulator DCs; the leader's expiry job is run by hand."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from chaos.order_stream import OrderFactory
from chaos.sim_process import SimProcess
from control_plane.alerting.engine import evaluate
from control_plane.alerting.observation import Observation
from control_plane.alerting.rules import builtin_rules
from control_plane.app import create_app
from control_plane.settings import Settings
from control_plane.store.tables import AuditEventRow, IncidentEventRow, SiteRow

from harness import engine_for, prepare_database, start_simulator, write_test_world


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Stack:
    client: TestClient
    app: Any
    tokens: dict[str, str]
    sim: SimProcess
    url: str
    clock: Clock
    factory: OrderFactory

    def post(self, path: str, body: dict[str, Any], role: str = "operator") -> httpx.Response:
        return self.client.post(path, json=body, headers={"Authorization": f"Bearer {self.tokens[role]}"})

    def site(self, code: str) -> dict[str, Any]:
        resp = self.client.get(
            f"/v1/sites/{code}", headers={"Authorization": f"Bearer {self.tokens['viewer']}"}
        )
        return resp.json()  # type: ignore[no-any-return]

    def rows(self, stmt: Any) -> list[Any]:
        engine = engine_for(self.url)
        with engine.connect() as c:
            found = list(c.execute(stmt))
        engine.dispose()
        return found


@pytest.fixture
def make_stack(db_url: str, tmp_path: Path) -> Iterator[Any]:
    world, path = write_test_world(tmp_path / "world.yaml")
    sim = start_simulator(path)
    tokens = prepare_database(db_url, world)
    clients: list[TestClient] = []

    def make(**settings: Any) -> Stack:
        clock = Clock()
        base = {"cancel_settle_s": 0.0, "dc_connect_timeout_s": 0.5, "dc_read_timeout_s": 0.5}
        app = create_app(
            Settings(database_url=db_url, background_jobs=False, **{**base, **settings}), clock=clock
        )
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return Stack(client, app, tokens, sim, db_url, clock, OrderFactory(world, seed=5))

    yield make
    for c in clients:
        c.__exit__(None, None, None)
    sim.stop()


def fail_over(st: Stack, **extra: Any) -> dict[str, Any]:
    for _ in range(5):
        st.post("/v1/orders", st.factory.order(), role="ingest")
    resp = st.post("/v1/sites/icheon/failover", {"reason": "flood at Icheon", **extra})
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def proposals(st: Stack) -> list[str]:
    return [
        r.message
        for r in st.rows(select(IncidentEventRow.message).where(IncidentEventRow.kind == "failback_proposed"))
    ]


def test_past_its_expiry_a_failover_proposes_its_failback_once(make_stack: Any) -> None:
    st = make_stack()
    answer = fail_over(st, expires_in=5)
    expires = datetime.fromisoformat(answer["expires_at"])
    assert expires == st.clock.now + timedelta(seconds=5)
    assert datetime.fromisoformat(st.site("icheon")["failover_expires_at"]) == expires
    # before the expiry: nothing
    st.clock.now += timedelta(seconds=4)
    assert st.app.state.failover_expiry.check() == [] and proposals(st) == []
    # past it: one proposal on the incident, however often the job runs; routing stays off
    st.clock.now += timedelta(seconds=2)
    for _ in range(3):
        assert st.app.state.failover_expiry.check() == []
    assert len(proposals(st)) == 1 and "drctl failback icheon" in proposals(st)[0]
    assert st.site("icheon")["accepting"] is False
    # Prometheus sees the expiry (FailoverExpired's PromQL twin reads it; deploy/prometheus)
    st.app.state.background._refresh_gauges()
    families = text_string_to_metric_families(st.client.get("/metrics").text)
    gauge = next(f for f in families if f.name == "drctl_site_failover_expires_timestamp_seconds")
    assert {s.labels["site"]: s.value for s in gauge.samples}["icheon"] == pytest.approx(expires.timestamp())
    # a failback by hand ends the expiry
    resp = st.post("/v1/sites/icheon/failback", {"reason": "pumped out"})
    assert resp.status_code == 200, resp.text
    assert st.site("icheon")["failover_expires_at"] is None


def test_with_policy_auto_and_a_healthy_dc_it_fails_back_with_its_ramp_audited(make_stack: Any) -> None:
    st = make_stack(failover_expiry_policy="auto", failover_expiry_ramp_s=120)
    fail_over(st, expires_in=5)
    st.clock.now += timedelta(seconds=6)
    assert st.app.state.failover_expiry.check() == ["icheon"]
    site = st.site("icheon")
    assert site["accepting"] is True and site["failover_expires_at"] is None
    assert 0 < site["ramp_weight"] < 1  # ramping from 10 % over the 120 s
    ((started, duration),) = st.rows(
        select(SiteRow.ramp_started_at, SiteRow.ramp_duration_s).where(SiteRow.code == "icheon")
    )
    assert duration == 120 and started is not None
    audited = st.rows(
        select(AuditEventRow.actor, AuditEventRow.action, AuditEventRow.reason).where(
            AuditEventRow.action == "site.failback"
        )
    )
    assert [(a.actor, a.action) for a in audited] == [("drctl:failover-expiry", "site.failback")]
    assert "expired" in audited[0].reason


def test_with_policy_auto_and_the_dc_still_down_it_proposes_then_fails_back_once_healthy(
    make_stack: Any,
) -> None:
    st = make_stack(failover_expiry_policy="auto", failover_expiry_ramp_s=0)
    fail_over(st, expires_in=5)
    st.sim.set_fault("icheon", "down")
    st.clock.now += timedelta(seconds=6)
    assert st.app.state.failover_expiry.check() == []
    assert len(proposals(st)) == 1 and st.site("icheon")["accepting"] is False
    st.sim.clear_fault("icheon")
    st.clock.now += timedelta(seconds=1)
    assert st.app.state.failover_expiry.check() == ["icheon"]
    assert st.site("icheon")["accepting"] is True


BAD_EXPIRIES = [
    {"expires_in": 0},
    {"expires_in": -5},
    {"expires_in": 31 * 86400},
    {"expires_in": "soon"},
    {"expires_at": "2020-01-01T00:00:00Z"},
    {"expires_at": "9999-01-01T00:00:00Z"},
    {"expires_at": "2030-01-01T00:00:00"},  # no offset
    {"expires_in": 60, "expires_at": "2030-01-01T00:00:00Z"},
    {"expirs_in": 60},
]


def test_a_bad_expiry_is_422_and_fails_nothing_over(make_stack: Any) -> None:
    st = make_stack()
    for extra in BAD_EXPIRIES:
        resp = st.post("/v1/sites/icheon/failover", {"reason": "flood at Icheon", **extra})
        assert resp.status_code == 422, (extra, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
    assert st.site("icheon")["accepting"] is True


def test_the_failover_expired_alert_fires_for_a_site_past_its_expiry() -> None:
    rules = [r for r in builtin_rules() if r.name == "FailoverExpired"]
    now = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)
    _, notes = evaluate(rules, Observation(failovers_expired={"icheon": 12.0}), {}, [], now, 3600, 3600)
    assert [(n.labels["alertname"], n.labels["site"], n.kind.value) for n in notes] == [
        ("FailoverExpired", "icheon", "firing")
    ]
    _, quiet = evaluate(rules, Observation(), {}, [], now, 3600, 3600)
    assert quiet == []

"""Runbooks through the HTTP API of a real control plane (in-process) with real simulator DCs:
dry runs, approvals by another operator, rollbacks in reverse, one start per alert, the kill switch.
The leader's job is run by hand (`advance_all`), as the scheduler would each tick."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import select
from test_dc_events import Api, make_api, world_sim

from control_plane.runbook_runs import repository as repo
from control_plane.runbook_runs.service import RunbookService
from control_plane.store.db import make_session_factory
from control_plane.store.tables import (
    AuditEventRow,
    ChannelRow,
    IncidentEventRow,
    RunbookExecutionRow,
    SiteRow,
)

from harness import engine_for

__all__ = ["make_api", "world_sim"]  # the fixtures, imported for pytest


@pytest.fixture
def api(make_api: Any) -> Api:
    return make_api(cancel_settle_s=0.0)  # type: ignore[no-any-return]


def service(api: Api) -> RunbookService:
    return api.app.state.runbooks  # type: ignore[no-any-return]


def post(api: Api, path: str, body: dict[str, Any], role: str = "operator") -> httpx.Response:
    return api.client.post(path, json=body, headers=api.as_role(role))


def execution(api: Api, execution_id: int) -> dict[str, Any]:
    resp = api.client.get(f"/v1/runbook-executions/{execution_id}", headers=api.as_role("viewer"))
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def rows(api: Api, stmt: Any) -> list[Any]:
    engine = engine_for(api.url)
    with engine.connect() as c:
        found = list(c.execute(stmt))
    engine.dispose()
    return found


def audit_actions(api: Api, prefix: str = "") -> list[str]:
    return [
        r.action
        for r in rows(api, select(AuditEventRow.action).order_by(AuditEventRow.id))
        if r.action.startswith(prefix)
    ]


def accepting(api: Api, site: str) -> bool:
    return bool(rows(api, select(SiteRow.accepting).where(SiteRow.code == site))[0][0])


def test_the_shipped_runbooks_are_listed(api: Api) -> None:
    resp = api.client.get("/v1/runbooks", headers=api.as_role("viewer"))
    assert resp.status_code == 200
    body = resp.json()
    assert {b["name"] for b in body["runbooks"]} == {
        "dc-outage",
        "carrier-outage",
        "payment-brownout",
        "peak-capacity",
    }
    assert body["automatic_starts"]["paused"] is False


def test_a_dry_run_shows_the_failover_plan_with_its_rules_and_changes_nothing(api: Api) -> None:
    for _ in range(3):
        api.client.post("/v1/orders", json=api.factory.order(), headers=api.as_role("ingest"))
    before = audit_actions(api)
    resp = post(api, "/v1/runbooks/dc-outage/executions", {"params": {"site": "icheon"}, "dry_run": True})
    assert resp.status_code == 201, resp.text
    ex = resp.json()
    assert ex["status"] == "dry_run" and [s["status"] for s in ex["steps"]] == ["planned"] * 6
    failover = next(s for s in ex["steps"] if s["step"] == "failover")
    plan = failover["output"]["would"]
    assert plan["dry_run"] is True and {r["name"] for r in plan["rules"]} >= {
        "min_accepting_sites",
        "target_capacity",
    }
    assert "orders_to_move" in plan["plan"]
    assert "approval" in next(s for s in ex["steps"] if s["step"] == "approve-failover")["output"]["would"]
    assert accepting(api, "icheon")
    assert [a for a in audit_actions(api) if a not in before] == [
        "runbook.start",
        "runbook.execution.dry_run",
    ]


def test_an_approval_by_another_operator_lets_the_failover_run(api: Api) -> None:
    resp = post(api, "/v1/runbooks/dc-outage/executions", {"params": {"site": "icheon"}})
    assert resp.status_code == 201, resp.text
    ex_id = resp.json()["id"]
    service(api).advance_all()
    assert execution(api, ex_id)["status"] == "waiting_approval" and accepting(api, "icheon")
    # the operator who started it cannot approve it; another can (an admin here)
    refused = post(api, f"/v1/runbook-executions/{ex_id}/approve", {})
    assert refused.status_code == 403 and refused.headers["content-type"].startswith(
        "application/problem+json"
    )
    assert (
        post(api, f"/v1/runbook-executions/{ex_id}/approve", {"comment": "go"}, role="admin").status_code
        == 200
    )
    again = post(api, f"/v1/runbook-executions/{ex_id}/approve", {}, role="admin")
    assert again.status_code == 409  # nothing waits for an approval any more
    service(api).advance_all()
    ex = execution(api, ex_id)
    assert not accepting(api, "icheon")
    steps = {s["step"]: s for s in ex["steps"]}
    assert steps["approve-failover"]["approved_by"] and steps["failover"]["status"] == "succeeded"
    assert steps["watch-recovery"]["status"] == "waiting" and ex["status"] == "running"
    # advancing again runs nothing twice
    service(api).advance_all()
    assert audit_actions(api).count("site.failover") == 1
    # and an abort stops it before its next step
    assert (
        post(api, f"/v1/runbook-executions/{ex_id}/abort", {"reason": "handled by hand"}).json()["status"]
        == "aborted"
    )
    service(api).advance_all()
    assert execution(api, ex_id)["status"] == "aborted"


def write_runbook(directory: Path, text: str) -> None:
    directory.mkdir(exist_ok=True)
    book = yaml.safe_load(text)
    (directory / f"{book['name']}.yaml").write_text(text)


SHED_AND_FAIL = """
name: shed-and-fail
description: raise capacity, shed a channel, then a step that is refused
steps:
  - id: raise
    action: site.capacity
    with: {site: daejeon, capacity_per_hour: 5000, reason: peak}
    rollback: {action: site.capacity, with: {site: daejeon, capacity_per_hour: 900, reason: undo}}
  - id: shed
    action: channel.pause
    with: {channel: naver, reason: peak}
    rollback: {action: channel.resume, with: {channel: naver, reason: undo}}
  - id: refused  # icheon takes orders already: the failback is refused (already_accepting)
    action: site.failback
    with: {site: icheon, reason: bring it back}
    on_failure: rollback
"""


def test_a_failing_step_with_rollback_undoes_the_completed_steps_in_reverse(
    make_api: Any, tmp_path: Path
) -> None:
    write_runbook(tmp_path / "books", SHED_AND_FAIL)
    api = make_api(runbook_dir=tmp_path / "books")
    ex_id = post(api, "/v1/runbooks/shed-and-fail/executions", {}).json()["id"]
    service(api).advance_all()
    ex = execution(api, ex_id)
    assert ex["status"] == "rolled_back" and "already_accepting" in ex["error"]
    order = [(s["step"], s["phase"], s["status"]) for s in ex["steps"]]
    assert order == [
        ("raise", "do", "succeeded"), ("shed", "do", "succeeded"), ("refused", "do", "failed"),
        ("shed", "undo", "succeeded"), ("raise", "undo", "succeeded"),
    ]  # fmt: skip
    assert rows(api, select(SiteRow.capacity_per_hour).where(SiteRow.code == "daejeon"))[0][0] == 900
    assert rows(api, select(ChannelRow.paused).where(ChannelRow.code == "naver"))[0][0] is False
    assert audit_actions(api, "channel.") == ["channel.pause", "channel.resume"]


SHED = """
name: shed
description: pause a channel
params: {channel: {type: channel}}
steps:
  - {id: shed, action: channel.pause, with: {channel: "{{ params.channel }}", reason: peak}}
"""


def test_a_paused_channel_gets_503_with_retry_after(make_api: Any, tmp_path: Path) -> None:
    write_runbook(tmp_path / "books", SHED)
    api = make_api(runbook_dir=tmp_path / "books")
    body = api.factory.order()
    post(api, "/v1/runbooks/shed/executions", {"params": {"channel": body["channel"]}})
    service(api).advance_all()
    refused = api.client.post("/v1/orders", json=body, headers=api.as_role("ingest"))
    assert refused.status_code == 503 and int(refused.headers["retry-after"]) > 0
    assert refused.headers["content-type"].startswith("application/problem+json")


def alertmanager(
    api: Api, status: str, fingerprint: str = "fp-icheon-1", starts: str = "2026-12-04T03:00:00Z"
) -> httpx.Response:
    alert = {
        "status": status,
        "labels": {"alertname": "SiteDown", "site": "icheon", "severity": "critical"},
        "annotations": {"summary": "DC icheon is down"},
        "startsAt": starts,
        "fingerprint": fingerprint,
    }
    body = {"version": "4", "status": status, "receiver": "drctl", "groupKey": "g", "alerts": [alert]}
    return api.client.post("/v1/hooks/alertmanager", json=body, headers=api.as_role("hook"))


def executions(api: Api) -> list[Any]:
    return rows(
        api,
        select(RunbookExecutionRow.runbook, RunbookExecutionRow.started_by, RunbookExecutionRow.incident_id),
    )


def test_an_alert_starts_its_runbook_once_however_often_it_arrives(api: Api) -> None:
    for _ in range(3):  # Alertmanager's repeats, and HA pairs each sending it
        assert alertmanager(api, "firing").status_code == 200
    started = executions(api)
    assert [(r.runbook, r.started_by) for r in started] == [("dc-outage", "alert:SiteDown")]
    assert started[0].incident_id is not None
    timeline = [
        r.message
        for r in rows(
            api,
            select(IncidentEventRow.message).where(IncidentEventRow.incident_id == started[0].incident_id),
        )
    ]
    assert any("runbook dc-outage #" in m and "started by SiteDown" in m for m in timeline)
    # the built-in engine seeing the same alert starts nothing more either
    engine = engine_for(api.url)
    with make_session_factory(engine).begin() as s:
        starts = datetime.fromisoformat("2026-12-04T03:00:00+00:00")
        labels = {"site": "icheon"}
        again = service(api).on_alert(
            s,
            "SiteDown",
            "fp-icheon-1",
            starts,
            "site_outage",
            labels,
            started[0].incident_id,
            datetime.now(UTC),
        )
        assert again == []
    engine.dispose()
    assert len(executions(api)) == 1


def test_the_kill_switch_stops_a_trigger_from_starting_anything(api: Api) -> None:
    assert post(api, "/v1/runbooks/pause", {"reason": "maintenance window"}).status_code == 200
    assert alertmanager(api, "firing", fingerprint="fp-2").status_code == 200
    assert executions(api) == []
    notes = [r.message for r in rows(api, select(IncidentEventRow.message))]
    assert any("automatic starts are paused (maintenance window)" in m for m in notes)
    # a start by hand is still possible, and goes on the open incident of its site
    by_hand = post(api, "/v1/runbooks/dc-outage/executions", {"params": {"site": "icheon"}}).json()
    incident = rows(
        api, select(IncidentEventRow.incident_id).where(IncidentEventRow.message.contains("paused"))
    )
    assert by_hand["incident_id"] == incident[0][0] and by_hand["started_by"].startswith("test-operator")
    api.client.post(
        f"/v1/runbook-executions/{by_hand['id']}/abort",
        json={"reason": "test"},
        headers=api.as_role("operator"),
    )
    # resuming lets the next alert start its runbook
    assert post(api, "/v1/runbooks/resume", {"reason": "done"}).status_code == 200
    assert alertmanager(api, "firing", fingerprint="fp-3", starts="2026-12-04T04:00:00Z").status_code == 200
    assert [(r.runbook, r.started_by) for r in executions(api)][-1] == ("dc-outage", "alert:SiteDown")
    assert len(executions(api)) == 2  # the one by hand, and the alert's
    assert audit_actions(api, "runbooks.") == ["runbooks.pause", "runbooks.resume"]


BAD_REQUESTS = [
    ("/v1/runbooks/dc-outage/executions", {"params": {"sight": "icheon"}}, 422),
    ("/v1/runbooks/dc-outage/executions", {"params": {"site": "atlantis"}}, 422),
    ("/v1/runbooks/dc-outage/executions", {"params": {"site": "icheon"}, "dryrun": True}, 422),
    ("/v1/runbooks/dc-outage/executions", {"params": {"site": "icheon"}, "dry_run": "yes"}, 422),
    ("/v1/runbooks/dc-outrage/executions", {"params": {"site": "icheon"}}, 404),
    ("/v1/runbook-executions/999999/approve", {}, 404),
    ("/v1/runbooks/pause", {"reason": "x"}, 422),
]


def test_bad_requests_start_nothing(api: Api) -> None:
    for path, body, status in BAD_REQUESTS:
        resp = post(api, path, body)
        assert resp.status_code == status, (path, body, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
    assert executions(api) == [] and audit_actions(api, "runbook") == []


def test_an_execution_another_process_holds_is_left_until_its_lease_runs_out(api: Api) -> None:
    ex_id = post(api, "/v1/runbooks/dc-outage/executions", {"params": {"site": "icheon"}}).json()["id"]
    engine = engine_for(api.url)
    now = datetime.now(UTC)
    with make_session_factory(engine).begin() as s:  # a leader that lost the lead mid-step
        assert repo.claim(s, ex_id, "old-leader", now, now + timedelta(minutes=5))
    assert service(api).advance(ex_id) is False
    assert execution(api, ex_id)["steps"] == []
    with make_session_factory(engine).begin() as s:  # it died: its lease ran out
        assert repo.claim(s, ex_id, "old-leader", now, now - timedelta(seconds=1))
    engine.dispose()
    assert service(api).advance(ex_id) is True
    assert execution(api, ex_id)["status"] == "waiting_approval"


def test_a_runbook_still_waiting_when_its_incident_resolves_is_aborted(api: Api) -> None:
    assert alertmanager(api, "firing", fingerprint="fp-4").status_code == 200
    ((ex_id,),) = rows(api, select(RunbookExecutionRow.id))
    service(api).advance_all()
    assert execution(api, ex_id)["status"] == "waiting_approval"
    # the DC came back before anyone approved: a late approval must not fail it over
    assert alertmanager(api, "resolved", fingerprint="fp-4").status_code == 200
    service(api).advance_all()
    ex = execution(api, ex_id)
    assert ex["status"] == "aborted" and "resolved before anyone approved" in ex["abort_reason"]
    assert post(api, f"/v1/runbook-executions/{ex_id}/approve", {}, role="admin").status_code == 409
    assert accepting(api, "icheon")

"""Runbooks end to end, each while 16 clients post orders to a real `drctl serve` on PostgreSQL with
simulator DCs: a DC put down fires SiteDown, which starts the DC-outage runbook once, and after an
operator's approval the DC is failed over with nothing lost; and a control plane SIGKILLed in the
middle of an execution resumes it after a restart without running any step twice."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from test_failover_under_load_e2e import VICTIM, Load, mixed_orders, placed_count, reconcile_live, wait_quiet

from chaos.sim_process import wait_until
from control_plane.store.tables import AuditEventRow, RunbookExecutionRow

from harness import (
    ControlPlane,
    control_plane,
    engine_for,
    prepare_database,
    start_simulator,
    write_test_world,
)

# real servers under load, bounded waits but no timing bound: runs beside the other tests
pytestmark = pytest.mark.load

DETECT = {
    "DRCTL_PROBE_INTERVAL_S": "0.5",
    "DRCTL_PROBE_TIMEOUT_S": "0.4",
    "DRCTL_PROBE_FAILURE_THRESHOLD": "2",
    "DRCTL_LEADER_POLL_S": "0.25",
    "DRCTL_ALERT_EVAL_INTERVAL_S": "0.25",
    "DRCTL_ALERT_FOR_S": json.dumps({"SiteDown": 0.5}),
    "DRCTL_ALERT_REPEAT_INTERVAL_S": "1",  # repeats come fast: none may start the runbook again
    "DRCTL_RUNBOOK_TICK_S": "0.25",
}


def api(cp: ControlPlane, token: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    with cp.client(token, timeout=120) as http:
        resp = http.request(method, path, json=body)
    assert resp.status_code < 300, (path, resp.status_code, resp.text)
    return resp.json()


def executions(url: str, runbook: str) -> list[Any]:
    engine = engine_for(url)
    with engine.connect() as c:
        found = list(
            c.execute(
                select(RunbookExecutionRow.id, RunbookExecutionRow.status).where(
                    RunbookExecutionRow.runbook == runbook
                )
            )
        )
    engine.dispose()
    return found


def audit_counts(url: str) -> Counter[tuple[str, str | None]]:
    engine = engine_for(url)
    with engine.connect() as c:
        found = Counter(
            (a, k) for a, k in c.execute(select(AuditEventRow.action, AuditEventRow.idempotency_key))
        )
    engine.dispose()
    return found


def step_status(cp: ControlPlane, token: str, execution_id: int, step: str) -> str | None:
    steps = api(cp, token, "GET", f"/v1/runbook-executions/{execution_id}")["steps"]
    return next((s["status"] for s in steps if s["step"] == step and s["phase"] == "do"), None)


def wait_status(
    cp: ControlPlane, token: str, execution_id: int, status: str, timeout_s: float = 60
) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def reached() -> bool:
        seen.update(api(cp, token, "GET", f"/v1/runbook-executions/{execution_id}"))
        return seen["status"] == status

    assert wait_until(reached, timeout_s, 0.2), (
        f"execution {execution_id} is {seen.get('status')}, not {status}: {seen}"
    )
    return seen


def test_a_dc_down_starts_the_outage_runbook_once_and_its_approval_fails_the_dc_over(
    pg_url: str, tmp_path: Path
) -> None:
    world, path = write_test_world(tmp_path / "world.yaml")
    tokens = prepare_database(pg_url, world)
    bodies = mixed_orders(world, 8000, seed=43)
    with start_simulator(path) as sim, control_plane(pg_url, tmp_path, DETECT, workers=2) as cp:
        with Load(cp.base_url, tokens["ingest"], bodies) as load:
            assert wait_until(lambda: placed_count(pg_url) >= 200, 120, 0.1), "the load did not start"
            # given the DC down in the middle of the load
            sim.set_fault(VICTIM, mode="down")
            # then SiteDown starts the DC-outage runbook, which waits for an approval
            assert wait_until(lambda: executions(pg_url, "dc-outage"), 60, 0.2), "no runbook started"
            ((ex_id, _),) = executions(pg_url, "dc-outage")
            ex = wait_status(cp, tokens["operator"], ex_id, "waiting_approval")
            assert ex["started_by"] == "alert:SiteDown" and ex["params"]["site"] == VICTIM
            time.sleep(3)  # the alert repeats (every second), on two workers
            assert len(executions(pg_url, "dc-outage")) == 1
            assert api(cp, tokens["viewer"], "GET", f"/v1/sites/{VICTIM}")["accepting"] is True
            # when an operator approves
            api(cp, tokens["operator"], "POST", f"/v1/runbook-executions/{ex_id}/approve", {"comment": "go"})
            ex = wait_status(cp, tokens["operator"], ex_id, "running")
            failover_done = lambda: step_status(cp, tokens["viewer"], ex_id, "failover") == "succeeded"  # noqa: E731
            assert wait_until(failover_done, 120, 0.2), "the failover step did not finish"
            at_failover = load.posted()
            assert wait_until(lambda: load.posted() >= at_failover + 200, 60, 0.05), "the load ended first"
        assert {r.status_code for r in load.answers} <= {200, 201, 202}
        assert api(cp, tokens["viewer"], "GET", f"/v1/sites/{VICTIM}")["accepting"] is False
        wait_quiet(pg_url)
        # every order in exactly one live ledger (the dead DC's copies are owed cancels) or held
        statuses = reconcile_live(pg_url, sim, world, ignore_victim=True)
        assert sum(statuses.values()) == len(load.answers)
        ex = api(cp, tokens["viewer"], "GET", f"/v1/runbook-executions/{ex_id}")
        assert [s["step"] for s in ex["steps"] if s["status"] == "succeeded"] == [
            "propose",
            "approve-failover",
            "failover",
        ]
        assert ex["incident_id"] is not None
        timeline = api(cp, tokens["viewer"], "GET", f"/v1/incidents/{ex['incident_id']}")
        kinds = [e["kind"] for e in timeline["timeline"]]
        assert "runbook" in kinds and "runbook_note" in kinds and "failover" in kinds


KILL_TEST = """
name: fail-over-and-back
description: fail a DC over, wait for an approval, fail it back
params: {site: {type: site, default: icheon}}
steps:
  - id: note
    action: incident.note
    with: {message: "moving {{ params.site }}"}
  - id: failover
    action: site.failover
    with: {site: "{{ params.site }}", reason: drill of the runbook engine}
  - {id: approve-failback, action: approval, timeout: 10m}
  - {id: failback, action: site.failback, with: {site: "{{ params.site }}", reason: back after the drill}}
"""


def test_a_sigkilled_control_plane_resumes_the_execution_and_runs_no_step_twice(
    pg_url: str, tmp_path: Path
) -> None:
    world, path = write_test_world(tmp_path / "world.yaml")
    tokens = prepare_database(pg_url, world)
    books = tmp_path / "books"
    books.mkdir()
    (books / "fail-over-and-back.yaml").write_text(KILL_TEST)
    env = {
        "DRCTL_RUNBOOK_DIR": str(books),
        "DRCTL_RUNBOOK_TICK_S": "0.25",
        "DRCTL_RUNBOOK_LEASE_S": "3",  # a kill during a tick leaves the lease: it runs out in 3 s
        "DRCTL_DISPATCH_LEASE_S": "3",  # orders the kill cut off mid-dispatch are re-posted after 3 s
        "DRCTL_LEADER_POLL_S": "0.25",
    }
    bodies = mixed_orders(world, 8000, seed=47)
    with start_simulator(path) as sim:
        with control_plane(pg_url, tmp_path, env) as first:
            load = Load(first.base_url, tokens["ingest"], bodies, max_s=30, tries=3)  # the kill cuts some off
            with load:
                assert wait_until(lambda: placed_count(pg_url) >= 300, 120, 0.1), "the load did not start"
                ex_id = api(
                    first, tokens["operator"], "POST", "/v1/runbooks/fail-over-and-back/executions", {}
                )["id"]
                wait_status(first, tokens["operator"], ex_id, "waiting_approval")
                # when the control plane is SIGKILLed in the middle of the execution
                first.proc.kill()
                first.proc.wait(10)
                posts_at_kill = sim.stats(VICTIM)["requests"].get("POST /orders", 0)
        with control_plane(pg_url, tmp_path, env) as second:
            with Load(second.base_url, tokens["ingest"], bodies[load.posted() + 50 :], max_s=30) as more:
                # then after the restart it is where it stopped, and goes on once approved
                assert (
                    api(second, tokens["viewer"], "GET", f"/v1/runbook-executions/{ex_id}")["status"]
                    == "waiting_approval"
                )
                assert wait_until(lambda: more.posted() >= 200, 60, 0.05), "the second load did not start"
                # counted at the simulator: the DC failed over before the crash got no order since
                assert sim.stats(VICTIM)["requests"].get("POST /orders", 0) == posts_at_kill
                api(second, tokens["admin"], "POST", f"/v1/runbook-executions/{ex_id}/approve", {})
                ex = wait_status(second, tokens["operator"], ex_id, "succeeded", 120)
                posted = more.posted()
                assert wait_until(lambda: more.posted() >= posted + 100, 60, 0.05), "the load ended first"
            wait_quiet(pg_url)
            # no step ran twice: each started once, and each change is in the audit log once
            assert [s["step"] for s in ex["steps"]] == ["note", "failover", "approve-failback", "failback"]
            counts = audit_counts(pg_url)
            keys = {s["step"]: s["idempotency_key"] for s in ex["steps"]}
            assert counts[("site.failover", keys["failover"])] == 1, counts
            assert counts[("site.failback", keys["failback"])] == 1, counts
            assert sum(n for (a, _), n in counts.items() if a == "site.failover.resumed") == 0
            for step, key in keys.items():
                assert counts[("runbook.step.start", key)] == 1, step
            # and after the failback the DC takes orders again
            assert sim.stats(VICTIM)["requests"].get("POST /orders", 0) > posts_at_kill
            statuses = reconcile_live(pg_url, sim, world, ignore_victim=False)
            assert sum(statuses.values()) == placed_count(pg_url)
            assert {r.status_code for r in [*load.answers, *more.answers]} <= {200, 201, 202}

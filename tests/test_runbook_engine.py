"""The runbook engine and file model (runbooks/), pure: order, approvals, waits, resumption after a
crash without running a step twice, rollbacks in reverse, dry runs; bad files refused by path."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from control_plane.domain import InvalidInput
from runbooks.engine import ActionFailed, Engine, ExecStatus, Execution, Phase, StepRun, StepStatus
from runbooks.model import Runbook, bind_params, matches, parse_runbook

T0 = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)


class MemoryJournal:
    """The journal as a database would keep it: copies in, copies out."""

    def __init__(self) -> None:
        self.rows: dict[tuple[int, Phase, int], StepRun] = {}
        self.saved: list[tuple[ExecStatus, int]] = []
        self.aborts: set[int] = set()

    def runs(self, execution_id: int) -> list[StepRun]:
        return [copy.deepcopy(r) for (eid, _, _), r in self.rows.items() if eid == execution_id]

    def start(self, execution: Execution, run: StepRun) -> None:
        assert (execution.id, run.phase, run.position) not in self.rows, "a step started twice"
        self.rows[(execution.id, run.phase, run.position)] = copy.deepcopy(run)

    def finish(self, execution: Execution, run: StepRun) -> None:
        self.rows[(execution.id, run.phase, run.position)] = copy.deepcopy(run)

    def save(self, execution: Execution) -> None:
        self.saved.append((execution.status, execution.cursor))

    def aborted(self, execution_id: int) -> bool:
        return execution_id in self.aborts


class World:
    """Effects that record every call; `fail` names actions that fail, `health` what probes see."""

    def __init__(self, fail: set[str] | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any], str, bool]] = []
        self.fail = fail or set()
        self.health: dict[str, tuple[str, datetime | None]] = {}
        self.previews: list[str] = []

    def perform(self, action: str, args: Mapping[str, Any], key: str, resumed: bool) -> dict[str, Any]:
        self.calls.append((action, dict(args), key, resumed))
        if action in self.fail:
            raise ActionFailed(f"{action} refused")
        return {"done": action}

    def preview(self, action: str, args: Mapping[str, Any]) -> dict[str, Any]:
        self.previews.append(action)
        return {"plan": action, **args}

    def probe(self, target: str) -> tuple[str, datetime | None]:
        return self.health.get(target, ("down", T0))


def book(steps: list[dict[str, Any]], **extra: Any) -> Runbook:
    return parse_runbook(
        {
            "name": "dc-outage",
            "description": "a DC is down",
            "params": {"site": {"type": "site", "default": "icheon", "from_label": "site"}},
            "steps": steps,
            **extra,
        }
    )


def note(step_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": step_id,
        "action": "incident.note",
        "with": {"message": f"{step_id} at {{{{ params.site }}}}"},
        **extra,
    }


def failover(**extra: Any) -> dict[str, Any]:
    return {
        "id": "failover",
        "action": "site.failover",
        "with": {"site": "{{ params.site }}", "reason": "runbook: DC down"},
        "rollback": {
            "action": "site.failback",
            "with": {"site": "{{ params.site }}", "reason": "runbook rollback"},
        },
        **extra,
    }


def execution(rb: Runbook, ex_id: int = 1) -> Execution:
    return Execution(ex_id, rb.name, bind_params(rb, {}, {}), ExecStatus.RUNNING, 0, "alice")


def test_steps_run_in_order_once_each_with_params_filled_in() -> None:
    rb = book([note("first"), failover(), note("last")])
    journal, world = MemoryJournal(), World()
    ex = Engine(journal, world).advance(execution(rb), rb, T0)
    assert ex.status is ExecStatus.SUCCEEDED
    assert [c[0] for c in world.calls] == ["incident.note", "site.failover", "incident.note"]
    assert world.calls[1][1] == {"site": "icheon", "reason": "runbook: DC down"}
    assert world.calls[0][1] == {"message": "first at icheon"}
    assert [c[2] for c in world.calls] == [f"runbook-execution:1:do:{i}" for i in range(3)]
    # advancing an ended execution does nothing
    Engine(journal, world).advance(ex, rb, T0)
    assert len(world.calls) == 3


def test_an_approval_waits_until_someone_decides() -> None:
    rb = book([{"id": "ok", "action": "approval", "timeout": "30m"}, failover()])
    journal, world = MemoryJournal(), World()
    engine = Engine(journal, world)
    ex = engine.advance(execution(rb), rb, T0)
    assert ex.status is ExecStatus.WAITING_APPROVAL and world.calls == []
    ex = engine.advance(ex, rb, T0 + timedelta(minutes=5))  # nobody decided yet: still waiting
    assert ex.status is ExecStatus.WAITING_APPROVAL and world.calls == []
    journal.rows[(1, Phase.DO, 0)].decided_by = "bob"
    ex = engine.advance(ex, rb, T0 + timedelta(minutes=6))
    assert ex.status is ExecStatus.SUCCEEDED and [c[0] for c in world.calls] == ["site.failover"]
    assert journal.rows[(1, Phase.DO, 0)].output == {"approved_by": "bob"}


def test_an_approval_not_given_in_time_fails_the_execution() -> None:
    rb = book([{"id": "ok", "action": "approval", "timeout": "30m"}, failover()])
    engine = Engine(MemoryJournal(), World())
    ex = engine.advance(execution(rb), rb, T0)
    ex = engine.advance(ex, rb, T0 + timedelta(minutes=31))
    assert ex.status is ExecStatus.FAILED and "no approval" in (ex.error or "")


def test_a_step_started_before_a_crash_runs_again_with_its_key_and_done_ones_never() -> None:
    rb = book([note("first"), failover(), note("last")])
    journal, world = MemoryJournal(), World()
    ex = execution(rb)
    # what a crash leaves: step 0 succeeded, step 1 started and never ended
    journal.rows[(1, Phase.DO, 0)] = StepRun(
        0, Phase.DO, "first", "incident.note", "runbook-execution:1:do:0", StepStatus.SUCCEEDED, T0, T0
    )
    journal.rows[(1, Phase.DO, 1)] = StepRun(
        1, Phase.DO, "failover", "site.failover", "runbook-execution:1:do:1", StepStatus.RUNNING, T0
    )
    ex.cursor = 1
    ex = Engine(journal, world).advance(ex, rb, T0 + timedelta(seconds=30))
    assert ex.status is ExecStatus.SUCCEEDED
    assert [(c[0], c[2], c[3]) for c in world.calls] == [
        ("site.failover", "runbook-execution:1:do:1", True),  # resumed: the effect knows its first call
        ("incident.note", "runbook-execution:1:do:2", False),
    ]


def test_a_failure_with_rollback_undoes_the_completed_steps_last_first() -> None:
    capacity = {
        "id": "capacity",
        "action": "site.capacity",
        "with": {"site": "daejeon", "capacity_per_hour": 4000, "reason": "absorb icheon"},
        "rollback": {
            "action": "site.capacity",
            "with": {"site": "daejeon", "capacity_per_hour": 2000, "reason": "back"},
        },
    }
    rb = book([capacity, note("between"), failover(), {**note("breaks"), "action": "channel.pause",
               "with": {"channel": "web", "reason": "shed"}, "on_failure": "rollback"}])  # fmt: skip
    journal, world = MemoryJournal(), World(fail={"channel.pause"})
    ex = Engine(journal, world).advance(execution(rb), rb, T0)
    assert ex.status is ExecStatus.ROLLED_BACK and "breaks failed" in (ex.error or "")
    assert [c[0] for c in world.calls] == [
        "site.capacity", "incident.note", "site.failover", "channel.pause",
        "site.failback", "site.capacity",  # the rollbacks, in reverse; the note has none
    ]  # fmt: skip
    assert world.calls[-1][1]["capacity_per_hour"] == 2000
    assert {k for k in journal.rows if k[1] is Phase.UNDO} == {(1, Phase.UNDO, 2), (1, Phase.UNDO, 0)}


def test_stop_and_continue() -> None:
    broken = {"id": "pause", "action": "channel.pause", "with": {"channel": "web", "reason": "shed"}}
    for on_failure, status, calls in (("stop", ExecStatus.FAILED, 1), ("continue", ExecStatus.SUCCEEDED, 2)):
        rb = book([{**broken, "on_failure": on_failure}, note("after")])
        world = World(fail={"channel.pause"})
        ex = Engine(MemoryJournal(), world).advance(execution(rb), rb, T0)
        assert ex.status is status and len(world.calls) == calls


def test_a_wait_holds_until_the_probe_has_shown_the_state_long_enough() -> None:
    wait = {"id": "watch", "action": "probe.wait", "timeout": "1h",
            "with": {"target": "site:{{ params.site }}", "health": "healthy", "hold_s": 60}}  # fmt: skip
    rb = book([wait, note("recovered")])
    world = World()
    engine = Engine(MemoryJournal(), world)
    ex = engine.advance(execution(rb), rb, T0)
    assert ex.status is ExecStatus.RUNNING and world.calls == []
    world.health["site:icheon"] = ("healthy", T0 + timedelta(minutes=10))
    ex = engine.advance(ex, rb, T0 + timedelta(minutes=10, seconds=30))  # healthy, not for 60 s yet
    assert world.calls == []
    ex = engine.advance(ex, rb, T0 + timedelta(minutes=11, seconds=1))
    assert ex.status is ExecStatus.SUCCEEDED and [c[0] for c in world.calls] == ["incident.note"]


def test_a_wait_past_its_timeout_fails() -> None:
    wait = {
        "id": "watch",
        "action": "probe.wait",
        "timeout": "10m",
        "with": {"target": "site:icheon", "health": "healthy"},
    }
    rb = book([wait])
    engine = Engine(MemoryJournal(), World())
    ex = engine.advance(execution(rb), rb, T0)
    ex = engine.advance(ex, rb, T0 + timedelta(minutes=11))
    assert ex.status is ExecStatus.FAILED and "not healthy in time" in (ex.error or "")


def test_a_dry_run_previews_every_change_and_performs_none() -> None:
    rb = book([note("first"), {"id": "ok", "action": "approval"}, failover()])
    journal, world = MemoryJournal(), World()
    ex = Engine(journal, world).dry_run(execution(rb), rb, T0)
    assert ex.status is ExecStatus.DRY_RUN and world.calls == []
    assert world.previews == ["incident.note", "site.failover"]
    planned = [journal.rows[(1, Phase.DO, i)] for i in range(3)]
    assert all(r.status is StepStatus.PLANNED for r in planned)
    assert planned[2].output["would"]["plan"] == "site.failover"
    assert "approval" in planned[1].output["would"]


# --- the file ---


def valid() -> dict[str, Any]:
    return {
        "name": "dc-outage",
        "description": "d",
        "params": {"site": {"type": "site"}},
        "steps": [failover()],
    }


@pytest.mark.parametrize(
    ("change", "path", "says"),
    [
        (lambda d: d["steps"][0].update(action="site.explode"), "steps[0].action", "unknown action"),
        (lambda d: d["steps"][0]["with"].update(sight="x"), "steps[0].with.sight", "Extra inputs"),
        (lambda d: d["steps"][0]["with"].pop("reason"), "steps[0].with.reason", "Field required"),
        (
            lambda d: d["steps"][0]["with"].update(site="{{ params.stie }}"),
            "steps[0].with",
            "unknown parameter 'stie'",
        ),
        (lambda d: d["steps"].append(dict(d["steps"][0])), "steps[1].id", "duplicate step id"),
        (lambda d: d["steps"][0].update(timeout="soon"), "steps[0].timeout", "duration"),
        (lambda d: d["steps"][0].update(on_failure="retry"), "steps[0].on_failure", "Input should be"),
        (
            lambda d: d["steps"][0]["rollback"].update(action="approval"),
            "steps[0].rollback.action",
            "cannot be a rollback",
        ),
        (
            lambda d: d.update(triggers=[{"alert": "SiteDown", "incident": "site_outage"}]),
            "triggers[0]",
            "exactly one",
        ),
        (lambda d: d.update(stepz=[]), "stepz", "Extra inputs"),
        (lambda d: d["params"]["site"].update(default=3), "params.site.default", "not a site"),
    ],
)
def test_a_bad_runbook_is_refused_with_the_path_of_the_error(change: Any, path: str, says: str) -> None:
    data = valid()
    change(data)
    with pytest.raises(InvalidInput) as refused:
        parse_runbook(data, "dc-outage.yaml")
    assert str(refused.value).startswith("dc-outage.yaml: ")
    found = [e for e in refused.value.errors if e.path == path]
    assert found and says in found[0].message, refused.value.errors


def test_rollback_on_failure_needs_a_rollback_before_it() -> None:
    data = valid()
    data["steps"] = [note("a", on_failure="rollback")]
    with pytest.raises(InvalidInput, match=r"steps\[0\]\.on_failure"):
        parse_runbook(data)


def test_params_come_from_the_call_then_the_alert_then_the_default() -> None:
    rb = book(
        [failover()],
        params={"site": {"type": "site", "from_label": "site"}, "ramp_s": {"type": "number", "default": 600}},
    )
    assert bind_params(rb, {}, {"site": "busan"}) == {"site": "busan", "ramp_s": 600.0}
    assert bind_params(rb, {"site": "icheon", "ramp_s": 5}, {"site": "busan"}) == {
        "site": "icheon",
        "ramp_s": 5.0,
    }
    with pytest.raises(InvalidInput) as refused:
        bind_params(rb, {"ramp_s": "fast", "sight": "x"}, {})
    assert {e.path for e in refused.value.errors} == {"params.sight", "params.site", "params.ramp_s"}


def test_a_trigger_matches_its_alert_and_labels() -> None:
    rb = book(
        [failover()],
        triggers=[{"alert": "SiteDown", "labels": {"severity": "critical"}}, {"incident": "site_outage"}],
    )
    by_alert, by_incident = rb.triggers
    assert matches(by_alert, "SiteDown", "site_outage", {"site": "icheon", "severity": "critical"})
    assert not matches(by_alert, "SiteDown", "site_outage", {"site": "icheon", "severity": "warning"})
    assert not matches(by_alert, "BreakerOpen", "site_outage", {"severity": "critical"})
    assert matches(by_incident, "BreakerOpen", "site_outage", {})
    assert not matches(by_incident, "IntegrationDown", "integration_outage", {})


def test_an_abort_stops_before_the_next_step() -> None:
    rb = book([{"id": "ok", "action": "approval"}, failover()])
    journal, world = MemoryJournal(), World()
    engine = Engine(journal, world)
    ex = engine.advance(execution(rb), rb, T0)
    journal.rows[(1, Phase.DO, 0)].decided_by = "bob"
    journal.aborts.add(1)
    ex = engine.advance(ex, rb, T0)
    assert ex.status is ExecStatus.ABORTED and world.calls == []

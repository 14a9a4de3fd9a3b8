"""The BIA as a scheduled batch job (issue 16): the leader re-runs it over the store on a schedule
and after a world load, never twice at once nor over an empty store; `GET /v1/sites` shows the RPO
beside the RTO and the run they come from. A real control plane in-process with simulator DCs;
the leader's job is run by hand."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from test_dc_events import Api, make_api, place, world_sim

from control_plane.store.db import make_session_factory
from control_plane.store.tables import BiaRunRow
from control_plane.world.repository import save_world

from harness import engine_for

__all__ = ["make_api", "world_sim"]  # the fixtures, imported for pytest


@pytest.fixture
def api(make_api: Any) -> Api:
    return make_api(bia_schedule_s=3600, bia_schedule_days=30)  # type: ignore[no-any-return]


def runs(api: Api) -> list[Any]:
    engine = engine_for(api.url)
    with engine.connect() as c:
        found = list(
            c.execute(select(BiaRunRow.id, BiaRunRow.status, BiaRunRow.requested_by).order_by(BiaRunRow.id))
        )
    engine.dispose()
    return found


def finished(api: Api, run_id: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = {r.id: r.status for r in runs(api)}[run_id]
        if status != "running":
            assert status == "done", runs(api)
            return
        time.sleep(0.1)
    raise AssertionError(f"BIA run {run_id} did not finish")


def change(api: Api, stmt: Any) -> None:
    engine = engine_for(api.url)
    with make_session_factory(engine).begin() as s:
        s.execute(stmt)
    engine.dispose()


def test_the_bia_runs_on_schedule_and_after_a_world_load_and_sites_show_its_figures(api: Api) -> None:
    schedule = api.app.state.bia_schedule
    # a world with no orders yet: nothing to analyse, nothing started
    assert schedule.check() is None and runs(api) == []
    for _ in range(12):
        place(api)
    # the first run: the world has a history now
    first = schedule.check()
    assert first is not None
    finished(api, first)
    assert [(r.id, r.requested_by) for r in runs(api)] == [(first, "drctl:bia-schedule")]
    site = api.client.get("/v1/sites/icheon", headers=api.as_role("viewer")).json()
    assert site["tier"] is not None and site["rto_hours"] is not None and site["rpo_seconds"] is not None
    assert site["bia_run_id"] == first
    # not due again until the schedule's period has passed ...
    assert schedule.check() is None
    change(api, update(BiaRunRow).values(created_at=datetime.now(UTC) - timedelta(hours=2)))
    second = schedule.check()
    assert second is not None and second != first
    # ... nor twice at once
    assert schedule.check() is None
    finished(api, second)
    # and after the world is loaded again, whatever the period
    engine = engine_for(api.url)
    with make_session_factory(engine).begin() as s:
        save_world(s, api.world, datetime.now(UTC))
    engine.dispose()
    third = schedule.check()
    assert third is not None
    finished(api, third)
    assert api.client.get("/v1/sites/icheon", headers=api.as_role("viewer")).json()["bia_run_id"] == third
    assert schedule.check() is None


def test_a_failed_run_is_not_retried_before_the_next_period(api: Api) -> None:
    for _ in range(3):
        place(api)
    first = api.app.state.bia_schedule.check()
    assert first is not None
    finished(api, first)
    change(api, update(BiaRunRow).where(BiaRunRow.id == first).values(status="failed"))
    assert api.app.state.bia_schedule.check() is None

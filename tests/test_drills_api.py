"""`/v1/drills`: a drill registers, hears the kill switch in its heartbeat, stores its result; peak
windows refuse a start unless forced with a reason; every change audited, bad input writes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from control_plane.app import create_app
from control_plane.settings import Settings
from control_plane.store.tables import AuditEventRow, DrillRunRow, RecoveryRow
from control_plane.world.loader import load_world_file

from harness import SAMPLE_WORLD, engine_for, prepare_database


@pytest.fixture
def make_api(db_url: str) -> Iterator[Any]:
    clients: list[TestClient] = []

    def make(**settings: Any) -> tuple[TestClient, dict[str, str]]:
        world, _ = load_world_file(SAMPLE_WORLD)
        tokens = prepare_database(db_url, world)
        client = TestClient(create_app(Settings(database_url=db_url, background_jobs=False, **settings)))
        client.__enter__()
        clients.append(client)
        return client, tokens

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def post(client: TestClient, token: str, path: str, **body: Any) -> Any:
    return client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})


def get(client: TestClient, token: str, path: str, **params: Any) -> Any:
    return client.get(path, params=params, headers={"Authorization": f"Bearer {token}"})


def rows(url: str, table: Any) -> int:
    engine = engine_for(url)
    with engine.connect() as c:
        n = c.scalar(select(func.count()).select_from(table)) or 0
    engine.dispose()
    return int(n)


def calendar_around_now(tmp_path: Path, name: str = "Black Friday") -> Path:
    now = datetime.now(UTC).replace(tzinfo=None)
    path = tmp_path / "calendar.yaml"
    windows = [
        {"name": "11.11 sale", "every_year": "11-11"},
        {
            "name": name,
            "start": (now - timedelta(hours=1)).isoformat(),
            "end": (now + timedelta(hours=1)).isoformat(),
        },
    ]
    path.write_text(yaml.safe_dump({"timezone": "UTC", "windows": windows}))
    return path


def test_a_drill_registers_hears_the_abort_and_stores_its_result(make_api: Any, db_url: str) -> None:
    client, tokens = make_api()
    op, viewer = tokens["operator"], tokens["viewer"]
    started = post(client, op, "/v1/drills", experiment="Icheon DC flood at peak", subject="icheon")
    assert started.status_code == 201, started.text
    run = started.json()
    assert run["status"] == "running" and run["started_by"]
    assert post(client, op, f"/v1/drills/{run['id']}/heartbeat").json() == {"abort": False, "reason": None}

    aborted = post(client, op, "/v1/drills/abort", reason="peak traffic came early")
    assert aborted.json() == {"aborted": [run["id"]]}
    beat = post(client, op, f"/v1/drills/{run['id']}/heartbeat").json()
    assert beat == {"abort": True, "reason": "peak traffic came early"}

    result = {
        "status": "aborted", "detect_s": 0.3, "mitigate_s": 0.05, "recover_s": 1.5, "rto_s": 14400.0,
        "lost": 0, "duplicated": 0, "held": 0, "deviations": ["aborted: peak traffic came early"],
        "journal": {"events": [{"t": 1.0, "name": "site_fault"}]},
    }  # fmt: skip
    done = post(client, op, f"/v1/drills/{run['id']}/result", **result)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "aborted" and done.json()["within_rto"] is True
    assert post(client, op, f"/v1/drills/{run['id']}/result", **result).status_code == 409
    assert post(client, op, f"/v1/drills/{run['id']}/heartbeat").json()["rule"] == "drill_ended"

    one = get(client, viewer, f"/v1/drills/{run['id']}").json()
    assert one["journal"] == result["journal"] and one["recover_s"] == 1.5
    listed = get(client, viewer, "/v1/drills").json()
    assert [d["id"] for d in listed] == [run["id"]] and listed[0]["journal"] is None
    assert get(client, viewer, "/v1/drills", status="running").json() == []
    assert get(client, viewer, "/v1/drills", statuss="running").status_code == 422  # a typo'd filter

    # the measured recovery is kept for the site, shown beside its RTO, and every change is audited
    assert rows(db_url, RecoveryRow) == 1
    sites = {s["code"]: s for s in get(client, viewer, "/v1/sites").json()}
    last = sites["icheon"]["last_recovery"]
    assert last["source"] == "drill" and last["source_id"] == run["id"] and last["recover_s"] == 1.5
    assert last["within_rto"] is True and sites["busan"]["last_recovery"] is None
    assert get(client, viewer, "/v1/sites/icheon").json()["last_recovery"] == last
    engine = engine_for(db_url)
    with engine.connect() as c:
        actions = list(c.scalars(select(AuditEventRow.action).order_by(AuditEventRow.id)))
    engine.dispose()
    assert actions[-3:] == ["drill.start", "drill.abort", "drill.result"]


def test_only_operators_start_or_abort_and_bad_input_writes_nothing(make_api: Any, db_url: str) -> None:
    client, tokens = make_api()
    viewer, op = tokens["viewer"], tokens["operator"]
    assert post(client, viewer, "/v1/drills", experiment="x", subject="icheon").status_code == 403
    assert post(client, viewer, "/v1/drills/abort", reason="stop it").status_code == 403
    bad = [
        {"experiment": "x", "subject": "icheon", "dryrun": True},  # a typo'd field
        {"experiment": "x\x00y", "subject": "icheon"},  # a control character
        {"experiment": "x", "subject": "Icheon DC"},
        {"experiment": "x", "subject": "icheon", "force": True},  # force without a reason
    ]
    for body in bad:
        resp = post(client, op, "/v1/drills", **body)
        assert resp.status_code == 422, (body, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
    assert post(client, op, "/v1/drills/abort").status_code == 422  # no reason
    assert rows(db_url, DrillRunRow) == 0
    assert get(client, viewer, "/v1/drills/999").status_code == 404


def test_a_drill_inside_a_peak_window_is_refused_unless_forced_with_a_reason(
    make_api: Any, db_url: str, tmp_path: Path
) -> None:
    client, tokens = make_api(commerce_calendar=calendar_around_now(tmp_path, "Black Friday week"))
    op = tokens["operator"]
    refused = post(client, op, "/v1/drills", experiment="x", subject="icheon")
    assert refused.status_code == 409
    problem = refused.json()
    assert problem["rule"] == "peak_window" and "Black Friday week" in problem["detail"]
    assert rows(db_url, DrillRunRow) == 0
    forced = post(client, op, "/v1/drills", experiment="x", subject="icheon", force=True,
                  reason="rehearsal agreed with the sale team")  # fmt: skip
    assert (
        forced.status_code == 201 and forced.json()["forced_reason"] == "rehearsal agreed with the sale team"
    )


def test_a_drill_not_heard_from_shows_as_lost(make_api: Any) -> None:
    client, tokens = make_api(drill_heartbeat_timeout_s=0)
    run = post(client, tokens["operator"], "/v1/drills", experiment="x", subject="busan").json()
    assert get(client, tokens["viewer"], f"/v1/drills/{run['id']}").json()["status"] == "lost"


def test_a_calendar_that_cannot_be_read_stops_the_start(tmp_path: Path, sqlite_url: str) -> None:
    bad = tmp_path / "calendar.yaml"
    bad.write_text("windows:\n  - {name: x, start: 9999-01-01T00:00, end: 9999-01-02T00:00}\n")
    with pytest.raises(Exception, match="year 9999"):
        create_app(Settings(database_url=sqlite_url, background_jobs=False, commerce_calendar=bad))


def test_failing_over_and_back_records_the_incident_as_a_measured_recovery(
    make_api: Any, db_url: str
) -> None:
    client, tokens = make_api()
    op = tokens["operator"]
    assert post(client, op, "/v1/sites/busan/failover", reason="flood").status_code == 200
    back = post(client, op, "/v1/sites/busan/failback", reason="dry again", force=True)
    assert back.status_code == 200, back.text
    engine = engine_for(db_url)
    with engine.connect() as c:
        got = c.execute(select(RecoveryRow.site, RecoveryRow.source, RecoveryRow.recover_s)).all()
    engine.dispose()
    assert len(got) == 1 and got[0][:2] == ("busan", "incident") and got[0][2] >= 0

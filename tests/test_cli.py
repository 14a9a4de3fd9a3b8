"""The drctl command line: exit 0 on success, 2 with one clear line on bad input, nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from sqlalchemy import func, inspect, select

from control_plane.store.tables import SiteRow

from harness import SAMPLE_WORLD, engine_for


def drctl(*args: str, db: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DRCTL_DATABASE_URL": db}
    return subprocess.run(
        [sys.executable, "-m", "control_plane", *args], env=env, capture_output=True, text=True, timeout=120
    )


def site_count(db: str) -> int:
    engine = engine_for(db)
    try:
        if not inspect(engine).has_table("sites"):
            return 0
        with engine.connect() as c:
            return int(c.scalar(select(func.count()).select_from(SiteRow)) or 0)
    finally:
        engine.dispose()


def test_world_load_stores_the_sample_world(sqlite_url: str) -> None:
    assert drctl("db", "upgrade", db=sqlite_url).returncode == 0
    done = drctl("world", "load", str(SAMPLE_WORLD), "--json", db=sqlite_url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "world": "kr-retail",
        "regions": 6,
        "channels": 4,
        "sites": 5,
        "integrations": 9,
        "skus": 60,
        "stock_rows": 210,
    }
    assert site_count(sqlite_url) == 5


def test_world_with_a_bad_reference_names_file_and_path_and_writes_nothing(
    sqlite_url: str, tmp_path: Path
) -> None:
    data = yaml.safe_load(SAMPLE_WORLD.read_text())
    data["sites"][1]["backups"] = ["icheon", "atlantis"]
    data["sites"][2]["capacity_per_hour"] = -5
    bad = tmp_path / "bad-world.yaml"
    bad.write_text(yaml.safe_dump(data))
    drctl("db", "upgrade", db=sqlite_url)
    done = drctl("world", "load", str(bad), db=sqlite_url)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1  # one line, naming the file and each bad path
    assert str(bad) in done.stderr
    assert "sites[2].capacity_per_hour" in done.stderr
    assert site_count(sqlite_url) == 0


def test_cross_reference_errors_name_their_path(sqlite_url: str, tmp_path: Path) -> None:
    data = yaml.safe_load(SAMPLE_WORLD.read_text())
    data["sites"][1]["backups"] = ["icheon", "atlantis"]
    bad = tmp_path / "bad-world.yaml"
    bad.write_text(yaml.safe_dump(data))
    done = drctl("world", "load", str(bad), db=sqlite_url)
    assert done.returncode == 2
    assert "sites[1].backups[1]: unknown site 'atlantis'" in done.stderr


def test_world_file_that_is_not_yaml_is_exit_2(sqlite_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("sites: [\n  - code: x\n")
    done = drctl("world", "load", str(bad), db=sqlite_url)
    assert done.returncode == 2
    assert "not valid YAML" in done.stderr


def test_token_with_unknown_role_is_exit_2(sqlite_url: str) -> None:
    drctl("db", "upgrade", db=sqlite_url)
    done = drctl("token", "create", "--role", "root", db=sqlite_url)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: --role must be one of")
    assert len(done.stderr.strip().splitlines()) == 1


def test_token_is_printed_once_and_stored_hashed(sqlite_url: str) -> None:
    drctl("db", "upgrade", db=sqlite_url)
    done = drctl("token", "create", "--role", "viewer", "--name", "ops-laptop", "--json", db=sqlite_url)
    token = json.loads(done.stdout)["token"]
    engine = engine_for(sqlite_url)
    with engine.connect() as c:
        stored = [tuple(r) for r in c.exec_driver_sql("SELECT name, role, token_hash FROM api_tokens")]
    engine.dispose()
    assert stored[0][:2] == ("ops-laptop", "viewer")
    assert token not in stored[0][2] and len(stored[0][2]) == 64


def test_unknown_option_is_a_usage_error(sqlite_url: str) -> None:
    assert drctl("world", "load", "--frobnicate", db=sqlite_url).returncode == 2


def test_bia_run_without_a_file_analyses_the_store_and_records_the_run(
    sqlite_url: str, tmp_path: Path
) -> None:
    from datetime import date, timedelta

    from bia.history import generate_history

    from harness import prepare_database, store_history, write_test_world

    world, _ = write_test_world(tmp_path / "world.yaml", capacity_scale=1, stock_scale=1)
    prepare_database(sqlite_url, world)
    store_history(
        sqlite_url, generate_history(world, 3, 1, date.today() - timedelta(days=4), orders_per_day=200)
    )
    done = drctl("bia", "run", "--out", str(tmp_path / "bia"), "--days", "10", "--json", db=sqlite_url)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert "report.html" in summary["files"] and (tmp_path / "bia" / "bia.json").exists()
    engine = engine_for(sqlite_url)
    with engine.connect() as c:
        runs = c.exec_driver_sql("SELECT status, requested_by FROM bia_runs").all()
        tiers = dict(c.exec_driver_sql("SELECT code, tier FROM sites").all())
    engine.dispose()
    assert [tuple(r) for r in runs] == [("done", "cli")]
    assert tiers == {s["code"]: s["tier"] for s in summary["sites"]}


def test_bia_run_over_an_empty_store_is_exit_2(sqlite_url: str, tmp_path: Path) -> None:
    assert drctl("db", "upgrade", db=sqlite_url).returncode == 0
    drctl("world", "load", str(SAMPLE_WORLD), db=sqlite_url)
    done = drctl("bia", "run", "--out", str(tmp_path / "bia"), db=sqlite_url)
    assert done.returncode == 2
    assert "no orders in the store" in done.stderr
    assert not (tmp_path / "bia").exists()


def test_serve_refuses_bad_monitoring_settings_in_one_line(sqlite_url: str) -> None:
    for env, names in (
        ({"DRCTL_PROBE_INTERVAL_S": "1", "DRCTL_PROBE_TIMEOUT_S": "5"}, "timeout_s"),
        ({"DRCTL_ALERT_FOR_S": '{"SiteDwn": 30}'}, "alert_for_s.SiteDwn"),
        ({"DRCTL_ALERT_SMTP_PASSWORD": "hunter2"}, "alert_smtp_starttls"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "control_plane", "serve", "--port", "1"],
            env={**os.environ, "DRCTL_DATABASE_URL": sqlite_url, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and names in done.stderr, done.stderr
        assert "hunter2" not in done.stderr

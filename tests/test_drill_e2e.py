"""`drctl drill run` end to end, as an operator runs it: real simulator, control plane, Locust.

- every shipped experiment runs in a short form (durations scaled down) and holds; the
  Icheon flood at peak is mitigated within 1 s with 0 lost and 0 duplicated
- Ctrl-C in the middle of the method stops it and the rollbacks clear every fault at the simulator
- a stop condition crossing aborts the method and rolls back; the drill says why and exits 1
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from chaos.sim_process import SimProcess, wait_until

from harness import control_plane, prepare_database, start_simulator, write_test_world

pytestmark = pytest.mark.e2e
EXPERIMENTS = Path(__file__).parents[1] / "chaos" / "experiments"


def drctl(
    *args: str, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    # the drill's own store is SQLite unless the test names a database
    base = {k: v for k, v in os.environ.items() if k != "DRCTL_DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "-m", "control_plane", *args],
        capture_output=True, text=True, timeout=timeout, env={**base, **(env or {})},
    )  # fmt: skip


def journal_of(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


@pytest.mark.parametrize("name", sorted(p.stem for p in EXPERIMENTS.glob("*.yaml")))
def test_each_shipped_experiment_holds_in_its_short_form(name: str, tmp_path: Path, pg_url: str) -> None:
    _, world_path = write_test_world(tmp_path / "world.yaml")
    env = {"DRCTL_DATABASE_URL": pg_url} if name.startswith("db-") else {}
    # the short form: probes every second, so an integration outage is found in 3 s, not 30
    env |= {"DRCTL_PROBE_INTERVAL_S": "1", "DRCTL_PROBE_TIMEOUT_S": "0.5"}
    journal = tmp_path / "journal.json"
    done = drctl(
        "drill", "run", name, "--world", str(world_path), "--time-scale", "0.2",
        "--journal", str(journal), "--workdir", str(tmp_path / "work"), env=env,
    )  # fmt: skip
    j = journal_of(journal) if journal.exists() else {}
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr[-3000:]}\n{j.get('deviations')}"
    assert j["status"] == "completed" and j["deviations"] == []
    assert j["reconciliation"]["lost"] == 0 and j["reconciliation"]["duplicated"] == 0
    assert j["reconciliation"]["placed"] > 0
    assert "time to mitigate" in done.stdout and "lost / duplicated / held" in done.stdout
    assert any(e["phase"] == "rollback" and e["ok"] for e in j["events"])
    if name == "icheon-flood-at-peak":
        m = j["measures"]
        assert m["mitigate_s"] is not None and m["mitigate_s"] <= 1.0, m
        assert m["detect_s"] is not None and m["recover_s"] is not None, m
        assert m["rto_s"] == 4 * 3600 and m["recovery_within_rto"] is True, m
        assert "recovery vs RTO" in done.stdout


@pytest.fixture
def running(tmp_path: Path, sqlite_url: str) -> Any:
    world, world_path = write_test_world(tmp_path / "world.yaml")
    tokens = prepare_database(sqlite_url, world)
    sim = start_simulator(world_path)
    try:
        with control_plane(sqlite_url, tmp_path) as cp:
            yield world, world_path, sim, cp.base_url, tokens
    finally:
        sim.stop()


def faults(sim: SimProcess) -> dict[str, Any]:
    return {t["name"]: t.get("fault") for t in sim.targets()}


def faulted(sim: SimProcess) -> list[str]:
    return [name for name, fault in faults(sim).items() if fault and fault.get("mode") not in (None, "none")]


def target_env(sim: SimProcess, tokens: dict[str, str]) -> dict[str, str]:
    return {
        "DRCTL_DRILL_VIEWER_TOKEN": tokens["viewer"],
        "DRCTL_DRILL_OPERATOR_TOKEN": tokens["operator"],
        "DRCTL_DRILL_INGEST_TOKEN": tokens["ingest"],
    }


LONG_FAULT = """
title: two faults and a long wait
subject: icheon
load: {profile: steady, users: 2, duration_s: 70}
warmup_s: 2
method:
  - action: site_fault
    with: {site: icheon, mode: down}
  - action: integration_outage
    with: {integration: cj-logistics}
  - pause: 60
rollbacks:
  - action: clear_faults
settle_s: 5
"""


def test_ctrl_c_mid_method_rolls_back_every_fault(tmp_path: Path, running: Any) -> None:
    _, world_path, sim, base, tokens = running
    experiment = tmp_path / "long.yaml"
    experiment.write_text(LONG_FAULT)
    journal = tmp_path / "journal.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "control_plane", "drill", "run", str(experiment), "--target", base,
         "--sim-admin", sim.admin_url, "--world", str(world_path), "--journal", str(journal),
         "--workdir", str(tmp_path / "work")],
        env={**os.environ, **target_env(sim, tokens)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert wait_until(lambda: len(faulted(sim)) == 2, 60, 0.2), f"faults never landed: {faults(sim)}"
        time.sleep(1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err[-2000:]
    assert faulted(sim) == [], faults(sim)
    j = journal_of(journal)
    assert j["status"] == "aborted"
    assert "aborted: interrupted by SIGINT" in j["deviations"]
    rollbacks = [e for e in j["events"] if e["phase"] == "rollback"]
    assert [(e["name"], e["ok"]) for e in rollbacks] == [("clear_faults", True)]
    assert "rolling back" in err


STOPPED = """
title: a stop condition that cannot hold
subject: icheon
load: {profile: steady, users: 2, duration_s: 40}
warmup_s: 2
method:
  - action: site_fault
    with: {site: busan, mode: latency, latency_ms: 200}
  - pause: 30
rollbacks:
  - action: clear_faults
stop_conditions:
  - probe: intake_p99_ms
    with: {window_s: 5}
    tolerance: {max: 0.001}
settle_s: 5
"""


def test_a_stop_condition_crossing_aborts_and_rolls_back(tmp_path: Path, running: Any) -> None:
    _, world_path, sim, base, tokens = running
    experiment = tmp_path / "stopped.yaml"
    experiment.write_text(STOPPED)
    journal = tmp_path / "journal.json"
    started = time.monotonic()
    done = drctl(
        "drill", "run", str(experiment), "--target", base, "--sim-admin", sim.admin_url,
        "--world", str(world_path), "--journal", str(journal), "--workdir", str(tmp_path / "work"),
        env=target_env(sim, tokens), timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    assert time.monotonic() - started < 30, "the method ran on instead of stopping"
    j = journal_of(journal)
    assert j["status"] == "aborted"
    assert "stop condition crossed: intake_p99_ms" in j["deviations"]
    assert [e["name"] for e in j["events"] if e["phase"] == "rollback"] == ["clear_faults"]
    assert faulted(sim) == []
    assert "deviation: stop condition crossed: intake_p99_ms" in done.stdout


def test_a_typo_in_the_experiment_is_exit_2_and_starts_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("title: t\nsubject: icheon\nmethod:\n  - action: site_fualt\n")
    started = time.monotonic()
    done = drctl("drill", "run", str(bad), "--workdir", str(tmp_path / "work"))
    assert done.returncode == 2
    assert done.stderr.startswith(f"{bad}: method[0]: unknown action 'site_fualt'")
    assert time.monotonic() - started < 15 and not (tmp_path / "work").exists()
    assert drctl("drill", "run", "no-such-drill").returncode == 2
    used = tmp_path / "used"
    used.mkdir()
    (used / "outcomes.jsonl").write_text("{}\n")
    reused = drctl("drill", "run", "icheon-flood-at-peak", "--workdir", str(used))
    assert reused.returncode == 2 and "not an empty directory" in reused.stderr
    nowhere = drctl("drill", "run", "icheon-flood-at-peak", "--journal", str(tmp_path / "no" / "j.json"))
    assert nowhere.returncode == 2 and "no directory" in nowhere.stderr
    assert drctl("drill", "run", "icheon-flood-at-peak", "--time-scale", "7").returncode == 2
    assert drctl("drill", "run", "icheon-flood-at-peak", "--target", "http://127.0.0.1:1").returncode == 2

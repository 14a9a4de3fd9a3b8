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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

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
    _, _, sim, _, _ = running
    proc, journal = start_drill(tmp_path, running, LONG_FAULT)
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


def start_drill(tmp_path: Path, running: Any, text: str, *extra: str) -> tuple[subprocess.Popen[str], Path]:
    _, world_path, sim, base, tokens = running
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text(text)
    journal = tmp_path / "journal.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "control_plane", "drill", "run", str(experiment), "--target", base,
         "--sim-admin", sim.admin_url, "--world", str(world_path), "--journal", str(journal),
         "--workdir", str(tmp_path / "work"), *extra],
        env={**os.environ, **target_env(sim, tokens)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    return proc, journal


def test_the_kill_switch_stops_every_drill_and_its_rollbacks_run(tmp_path: Path, running: Any) -> None:
    _, _, sim, base, tokens = running
    proc, journal = start_drill(tmp_path, running, LONG_FAULT)
    auth = {"Authorization": f"Bearer {tokens['operator']}"}
    try:
        assert wait_until(lambda: len(faulted(sim)) == 2, 60, 0.2), f"faults never landed: {faults(sim)}"
        pulled = httpx.post(
            f"{base}/v1/drills/abort", json={"reason": "the sale started early"}, headers=auth
        )
        assert pulled.status_code == 200 and len(pulled.json()["aborted"]) == 1, pulled.text
        started = time.monotonic()
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err[-2000:]
    assert time.monotonic() - started < 30, "the drill did not hear the kill switch"
    assert faulted(sim) == [], faults(sim)
    j = journal_of(journal)
    assert j["status"] == "aborted"
    assert "aborted: the kill switch was pulled: the sale started early" in j["deviations"]
    stored = httpx.get(f"{base}/v1/drills/{j['drill_id']}", headers=auth).json()
    assert stored["status"] == "aborted" and stored["abort_reason"] == "the sale started early"
    assert stored["journal"]["events"] == j["events"]
    assert (tmp_path / "work" / "report.html").exists() and f"stored as drill {j['drill_id']}" in out


def test_drill_abort_on_this_machine_signals_a_drill_with_its_own_world(tmp_path: Path, running: Any) -> None:
    _, _, sim, _, _ = running
    proc, journal = start_drill(tmp_path, running, LONG_FAULT)
    try:
        assert wait_until(lambda: len(faulted(sim)) == 2, 60, 0.2), f"faults never landed: {faults(sim)}"
        env = {k: v for k, v in os.environ.items() if k not in ("DRCTL_URL", "DRCTL_TOKEN")}
        told = subprocess.run(
            [sys.executable, "-m", "control_plane", "drill", "abort", "--reason", "stop everything"],
            capture_output=True, text=True, timeout=30, env=env,
        )  # fmt: skip
        assert told.returncode == 0, told.stderr
        assert f"sent SIGTERM (pids {proc.pid})" in told.stdout
        proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1 and faulted(sim) == []
    assert "aborted: interrupted by SIGTERM" in journal_of(journal)["deviations"]


SHORT = """
title: a short one
subject: icheon
load: {profile: steady, users: 1, duration_s: 6}
warmup_s: 1
method:
  - pause: 1
settle_s: 2
"""


def test_a_drill_inside_a_peak_window_is_refused_unless_forced(tmp_path: Path, running: Any) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    calendar = tmp_path / "calendar.yaml"
    window = {"name": "Black Friday", "start": (now - timedelta(hours=1)).isoformat(timespec="minutes"),
              "end": (now + timedelta(hours=1)).isoformat(timespec="minutes")}  # fmt: skip
    calendar.write_text(yaml.safe_dump({"timezone": "UTC", "windows": [window]}))
    refused = drctl("drill", "run", "icheon-flood-at-peak", "--calendar", str(calendar),
                    "--workdir", str(tmp_path / "w1"))  # fmt: skip
    assert refused.returncode == 2 and "peak_window: Black Friday (" in refused.stderr, refused.stderr
    assert not (tmp_path / "w1").exists()
    no_reason = drctl("drill", "run", "icheon-flood-at-peak", "--calendar", str(calendar), "--force")
    assert no_reason.returncode == 2 and "--force needs --reason" in no_reason.stderr

    _, _, _, base, tokens = running
    proc, journal = start_drill(tmp_path, running, SHORT, "--calendar", str(calendar), "--force",
                                "--reason", "rehearsal agreed with the sale team")  # fmt: skip
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    stored = httpx.get(f"{base}/v1/drills/{journal_of(journal)['drill_id']}",
                       headers={"Authorization": f"Bearer {tokens['viewer']}"}).json()  # fmt: skip
    assert stored["status"] == "completed"


def test_negative_control_without_breakers_the_flood_drill_deviates_and_says_why(tmp_path: Path) -> None:
    # the same experiment and short form, on a control plane whose breakers are off: only its
    # probes, at their production interval (10 s), could see the flood, too late for the drill's
    # bounds; or orders wait out the DC timeouts until the p99 stop condition aborts the drill
    _, world_path = write_test_world(tmp_path / "world.yaml")
    journal = tmp_path / "journal.json"
    env = {"DRCTL_BREAKERS": "false", "DRCTL_PROBE_INTERVAL_S": "10"}
    done = drctl(
        "drill", "run", "icheon-flood-at-peak", "--world", str(world_path), "--time-scale", "0.2",
        "--journal", str(journal), "--workdir", str(tmp_path / "work"), env=env,
    )  # fmt: skip
    j = journal_of(journal)
    assert done.returncode == 1, f"{done.stdout}\n{done.stderr[-2000:]}"
    why = " | ".join(j["deviations"])
    if j["status"] == "aborted":
        assert "stop condition crossed: intake_p99_ms" in why, why
    else:
        assert j["status"] == "deviated"
        assert "never showed the fault" in why or "time to detect" in why, why
    assert "deviation:" in done.stdout
    # and it lost nothing: without breakers orders pay for it in latency, they are not dropped
    assert j["reconciliation"]["lost"] == 0 and j["reconciliation"]["duplicated"] == 0

"""drctl's drill actions and probes under Chaos Toolkit (`chaos run`), against a real simulator and
control plane:

- the shipped Icheon experiment completes: the fault lands, the control plane sees it, no order is
  lost or duplicated, and the rollback leaves no fault at the simulator
- a steady state the fault breaks makes the run deviate, and the rollbacks still clear the fault
- the ledger probes reconcile against the control plane's orders, or against an outcomes file
- bad arguments are refused by `chaos validate` or by the activity, before anything is touched
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from chaos import ctk
from chaos.order_stream import OrderFactory
from chaos.sim_process import SimProcess, wait_until

from harness import control_plane, prepare_database, start_simulator, write_test_world

pytestmark = pytest.mark.e2e
ICHEON_DOWN = Path(__file__).parents[1] / "chaos" / "experiments" / "ctk" / "icheon-down.json"
# probes every second, so the control plane sees a DC go down within the experiment's short pause
FAST_PROBES = {"DRCTL_PROBE_INTERVAL_S": "1", "DRCTL_PROBE_TIMEOUT_S": "0.5"}


@dataclass
class World:
    sim: SimProcess
    base_url: str
    tokens: dict[str, str]
    factory: OrderFactory

    def env(self) -> dict[str, str]:
        """What an operator exports before `chaos run` (no operator token: the experiment needs none)."""
        return {
            "DRCTL_URL": self.base_url,
            "DRCTL_SIM_ADMIN_URL": self.sim.admin_url,
            "DRCTL_DRILL_VIEWER_TOKEN": self.tokens["viewer"],
        }

    def configuration(self) -> dict[str, Any]:
        return {"drctl_url": self.base_url, "drctl_sim_admin_url": self.sim.admin_url}

    def get(self, path: str, **params: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens['viewer']}"}
        return httpx.get(f"{self.base_url}{path}", headers=headers, params=params, timeout=10).json()


@pytest.fixture
def world(tmp_path: Path, sqlite_url: str) -> Iterator[World]:
    w, world_path = write_test_world(tmp_path / "world.yaml")
    tokens = prepare_database(sqlite_url, w)
    sim = start_simulator(world_path)
    try:
        with control_plane(sqlite_url, tmp_path, extra_env=FAST_PROBES) as cp:
            yield World(sim, cp.base_url, tokens, OrderFactory(w, seed=11))
    finally:
        sim.stop()


def post_orders(w: World, n: int) -> list[str]:
    """Post `n` orders and wait until each is with a DC; return their ids."""
    headers = {"Authorization": f"Bearer {w.tokens['ingest']}"}
    with httpx.Client(base_url=w.base_url, headers=headers, timeout=30, trust_env=False) as http:
        answers = [http.post("/v1/orders", json=w.factory.order()) for _ in range(n)]
    assert all(a.status_code in (200, 201, 202) for a in answers), [a.text for a in answers]
    ids = [a.json()["id"] for a in answers]

    def all_accepted() -> bool:
        return len(w.get("/v1/orders", status="accepted", limit=1000)) == n

    assert wait_until(all_accepted, 20, 0.2), "orders still on their way to a DC"
    return ids


def faulted(sim: SimProcess) -> list[str]:
    faults = {t["name"]: t.get("fault") for t in sim.targets()}
    return [name for name, f in faults.items() if f and f.get("mode") not in (None, "none")]


def chaos(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The `chaos` CLI as an operator runs it: no DRCTL_ setting but `env`, no ctk settings file."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("DRCTL_")}
    options = ["--settings", str(tmp_path / "none.yaml"), "--log-file", str(tmp_path / "ctk.log")]
    return subprocess.run(
        [sys.executable, "-m", "chaostoolkit", "--no-version-check", *options, *args],
        capture_output=True, text=True, timeout=50, cwd=tmp_path, env={**base, "HOME": str(tmp_path), **env},
    )  # fmt: skip


def chaos_run(
    w: World, experiment: Path, tmp_path: Path, extra_env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], str]:
    """`chaos run` of `experiment` against `w`; return the process, its journal and its log."""
    journal = tmp_path / "journal.json"
    done = chaos(tmp_path, {**w.env(), **extra_env}, "run", str(experiment), "--journal-path", str(journal))
    assert journal.exists(), f"no journal: {done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done, json.loads(journal.read_text()), (tmp_path / "ctk.log").read_text()


def runs_by_name(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["activity"]["name"]: e for e in entries}


def test_icheon_down_experiment_completes_and_leaves_no_fault(world: World, tmp_path: Path) -> None:
    # given orders with the DCs, so the ledger probes have something to reconcile
    post_orders(world, 12)
    # when the shipped experiment runs with a short pause
    done, journal, log = chaos_run(world, ICHEON_DOWN, tmp_path, {"DRCTL_CTK_FAULT_PAUSE_S": "3"})
    # then it completes with its steady state held before and after Icheon went down
    assert done.returncode == 0, f"{done.stderr[-3000:]}\n{log[-3000:]}"
    assert journal["status"] == "completed" and journal["deviated"] is False
    for when in ("before", "after"):
        probes = journal["steady_states"][when]
        assert probes["steady_state_met"] is True, probes
        assert {p["activity"]["name"]: p["output"] for p in probes["probes"]} == {
            "control-plane-ready": 200, "no-order-lost": 0, "no-order-duplicated": 0,
        }  # fmt: skip
    method = runs_by_name(journal["run"])
    assert method["icheon-down"]["status"] == "succeeded", method["icheon-down"]
    assert method["icheon-down"]["output"] == "icheon: down"
    # and the control plane saw Icheon fail within the pause
    assert method["icheon-health-seen-by-the-control-plane"]["output"] in ("degraded", "down")
    assert method["icheon-breaker-seen-by-the-control-plane"]["status"] == "succeeded"
    # and the rollback cleared it
    assert [(r["activity"]["name"], r["status"]) for r in journal["rollbacks"]] == [
        ("clear-every-fault", "succeeded")
    ]
    assert faulted(world.sim) == []
    assert world.tokens["viewer"] not in log + json.dumps(journal) + done.stdout + done.stderr


def site_health_experiment(path: Path) -> Path:
    """An experiment whose steady state is Icheon's own health: the fault it injects breaks it."""
    provider = {"type": "python", "module": "chaos.ctk"}
    path.write_text(json.dumps({
        "title": "Icheon stays healthy while it is down",
        "description": "cannot hold: the steady state is the very thing the method breaks",
        "configuration": {
            "drctl_url": {"type": "env", "key": "DRCTL_URL"},
            "drctl_sim_admin_url": {"type": "env", "key": "DRCTL_SIM_ADMIN_URL"},
        },
        "secrets": {"drctl": {"viewer_token": {"type": "env", "key": "DRCTL_DRILL_VIEWER_TOKEN"}}},
        "steady-state-hypothesis": {"title": "Icheon is healthy", "probes": [{
            "type": "probe", "name": "icheon-healthy", "tolerance": "healthy",
            "provider": {**provider, "func": "http_get", "secrets": ["drctl"],
                         "arguments": {"path": "/v1/sites/icheon", "jsonpath": "$.health"}},
        }]},
        "method": [{
            "type": "action", "name": "icheon-down", "pauses": {"after": 4},
            "provider": {**provider, "func": "site_fault", "arguments": {"site": "icheon", "mode": "down"}},
        }],
        "rollbacks": [{"type": "action", "name": "clear-every-fault",
                       "provider": {**provider, "func": "clear_faults"}}],
    }))  # fmt: skip
    return path


def test_a_steady_state_the_fault_breaks_deviates_and_still_rolls_back(world: World, tmp_path: Path) -> None:
    # given Icheon healthy in the control plane's eyes
    assert wait_until(lambda: world.get("/v1/sites/icheon")["health"] == "healthy", 20, 0.2)
    # when an experiment whose steady state is Icheon's health takes Icheon down
    done, journal, log = chaos_run(world, site_health_experiment(tmp_path / "x.json"), tmp_path, {})
    # then the run deviates (exit 1), having held before the method and not after
    assert done.returncode == 1, f"{done.stderr[-3000:]}\n{log[-3000:]}"
    assert journal["deviated"] is True
    assert journal["steady_states"]["before"]["steady_state_met"] is True
    after = journal["steady_states"]["after"]
    assert after["steady_state_met"] is False
    assert after["probes"][0]["output"] in ("degraded", "down"), after
    assert "Experiment ended with status: deviated" in log
    # and the rollbacks still ran: no fault is left at the simulator
    assert [(r["activity"]["name"], r["status"]) for r in journal["rollbacks"]] == [
        ("clear-every-fault", "succeeded")
    ]
    assert faulted(world.sim) == []


def test_orders_lost_reconciles_the_ledgers_against_the_control_planes_orders(world: World) -> None:
    # given orders every DC ledger holds
    posted = post_orders(world, 8)
    secrets = {"viewer_token": world.tokens["viewer"]}
    assert ctk.orders_lost(configuration=world.configuration(), secrets=secrets) == 0
    # when the simulator forgets every ledger
    world.sim.reset()
    # then each order the control plane took is lost, and none is counted twice
    assert ctk.orders_lost(configuration=world.configuration(), secrets=secrets) == len(posted)
    assert ctk.orders_duplicated(configuration=world.configuration(), secrets=secrets) == 0


def test_orders_lost_with_an_outcomes_file_counts_what_shoppers_were_told(
    world: World, tmp_path: Path
) -> None:
    # given orders the DCs hold, and a shopper told of one the control plane never stored
    posted = post_orders(world, 4)
    lines = [{"t": 0, "latency_ms": 5, "code": 201, "region": "capital", "order_id": oid} for oid in posted]
    lines.append({"t": 0, "latency_ms": 5, "code": 201, "region": "capital", "order_id": "ord-never-stored"})
    outcomes = tmp_path / "outcomes.jsonl"
    outcomes.write_text("".join(json.dumps(line) + "\n" for line in lines))
    # when orders_lost reads the outcomes file, then that one is lost
    secrets = {"viewer_token": world.tokens["viewer"]}
    got = ctk.orders_lost(outcomes=str(outcomes), configuration=world.configuration(), secrets=secrets)
    assert got == 1


def test_bad_arguments_are_refused_before_anything_is_touched(tmp_path: Path) -> None:
    # nothing listens on these ports: an activity that got as far as a call would fail differently
    nowhere = {"drctl_url": "http://127.0.0.1:9", "drctl_sim_admin_url": "http://127.0.0.1:9"}
    with pytest.raises(ctk.InvalidArguments, match=r"^site_fault arguments: mode: Input should be 'down'"):
        ctk.site_fault(site="icheon", mode="flood", configuration=nowhere)
    with pytest.raises(ctk.InvalidArguments, match=r"^configuration: drctl_sim_admin_url: Field required"):
        ctk.clear_faults(configuration={"drctl_url": "http://127.0.0.1:9"})
    with pytest.raises(ctk.InvalidArguments, match=r"needs the secret viewer_token"):
        ctk.orders_held(configuration=nowhere)
    with pytest.raises(ctk.InvalidArguments, match=r"intake_p99_ms reads what the load's shoppers saw"):
        ctk.intake_p99_ms(configuration=nowhere, secrets={"viewer_token": "x"})
    with pytest.raises(ctk.NotUnderChaosToolkit, match=r"needs the control-plane process"):
        ctk.kill_control_plane(configuration=nowhere)
    # and `chaos validate` binds each activity's arguments to its parameters: a typo fails there
    typo = json.loads(ICHEON_DOWN.read_text())
    typo["method"][0]["provider"]["arguments"]["latncy_ms"] = 100
    (tmp_path / "typo.json").write_text(json.dumps(typo))
    env = {"DRCTL_URL": nowhere["drctl_url"], "DRCTL_SIM_ADMIN_URL": nowhere["drctl_sim_admin_url"],
           "DRCTL_DRILL_VIEWER_TOKEN": "x"}  # fmt: skip
    done = chaos(tmp_path, env, "validate", str(tmp_path / "typo.json"))
    assert done.returncode == 1
    assert (
        "argument 'latncy_ms' is not part of the function signature in activity 'site_fault'"
        in done.stdout + done.stderr
    )


def test_discovery_lists_each_activity_as_an_action_or_a_probe_with_its_arguments() -> None:
    found = {a["name"]: a for a in ctk.discover()["activities"]}
    assert found["site_fault"]["type"] == "action" and found["orders_lost"]["type"] == "probe"
    assert [a["name"] for a in found["site_fault"]["arguments"]][:2] == ["site", "mode"]
    assert "kill_control_plane" not in found

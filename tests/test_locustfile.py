"""The Locust drill suite end to end: locust as a child process against a real control plane and DCs.

Locust monkey-patches the interpreter with gevent, so it only ever runs as a subprocess here; what
the tests read is what the drill runner reads: the exit code, the outcomes file and the CSV stats.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness import ROOT, control_plane, prepare_database, start_simulator, write_test_world
from servers import webhook_receiver

pytestmark = pytest.mark.e2e

LOCUSTFILE = ROOT / "chaos" / "locustfile.py"
TAKEN = {201, 202}  # a new order placed at a DC, or stored and held for retry
OUTCOME_FIELDS = {
    "t",
    "latency_ms",
    "code",
    "external_id",
    "channel",
    "region",
    "order_id",
    "status",
    "site",
    "attempts",
    "passed_over",
}


@dataclass(frozen=True)
class Stack:
    base_url: str
    world_path: Path
    tokens: dict[str, str]


@dataclass(frozen=True)
class LocustRun:
    code: int
    wall_s: float
    output: str
    outcomes: list[dict[str, Any]]
    stats: list[dict[str, str]]

    def stats_row(self, method: str, name: str) -> dict[str, str] | None:
        return next((r for r in self.stats if r["Type"] == method and r["Name"] == name), None)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One control plane (embedded SQLite, as under `drctl demo`) over simulated DCs for the module."""
    tmp = tmp_path_factory.mktemp("locust-stack")
    url = f"sqlite:///{tmp / 'drctl.db'}"
    world, world_path = write_test_world(tmp / "world.yaml")
    sim = start_simulator(world_path)
    try:
        tokens = prepare_database(url, world)
        with control_plane(url, tmp) as cp:
            yield Stack(cp.base_url, world_path, tokens)
    finally:
        sim.stop()


def run_locust(host: str, tmp_path: Path, env: dict[str, str], timeout_s: float) -> LocustRun:
    """`locust -f chaos/locustfile.py --headless --host URL` with the drill's environment, bounded."""
    outcomes = tmp_path / "outcomes.jsonl"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DRCTL_DRILL_", "LOCUST_"))}
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", host]
    started = time.monotonic()
    proc = subprocess.run(
        [*argv, "--csv", str(tmp_path / "run")],
        env={**clean, "DRCTL_DRILL_OUTCOMES": str(outcomes), **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    stats_file = tmp_path / "run_stats.csv"
    stats = list(csv.DictReader(stats_file.read_text().splitlines())) if stats_file.exists() else []
    lines = outcomes.read_text().splitlines() if outcomes.exists() else []
    return LocustRun(
        proc.returncode,
        time.monotonic() - started,
        proc.stdout + proc.stderr,
        [json.loads(line) for line in lines],
        stats,
    )


def orders_per_s(outcomes: list[dict[str, Any]], t0: float, start: float, end: float) -> float:
    return sum(1 for o in outcomes if start <= o["t"] - t0 < end) / (end - start)


def test_a_steady_run_places_every_order_once_and_ends_by_itself(stack: Stack, tmp_path: Path) -> None:
    # given a steady drill of 4 shoppers for 8 s, with operators watching
    env = {
        "DRCTL_DRILL_WORLD": str(stack.world_path),
        "DRCTL_DRILL_INGEST_TOKEN": stack.tokens["ingest"],
        "DRCTL_DRILL_VIEWER_TOKEN": stack.tokens["viewer"],
        "DRCTL_DRILL_SHAPE": "steady",
        "DRCTL_DRILL_USERS": "4",
        "DRCTL_DRILL_DURATION_S": "8",
    }
    # when locust runs with no flags but the host
    run = run_locust(stack.base_url, tmp_path, env, timeout_s=40)
    # then it ends by itself, without a failure, and every order it sent was taken exactly once
    assert run.code == 0, run.output[-3000:]
    assert run.wall_s < 8 + 15, f"the run did not end with its shape ({run.wall_s:.1f} s)"
    assert len(run.outcomes) >= 4 * 8, f"only {len(run.outcomes)} orders from 4 shoppers in 8 s"
    assert all(set(o) == OUTCOME_FIELDS for o in run.outcomes)
    assert {o["code"] for o in run.outcomes} <= TAKEN
    assert len({o["external_id"] for o in run.outcomes}) == len(run.outcomes)
    assert all(o["order_id"] and o["status"] and o["attempts"] == 1 for o in run.outcomes)
    assert all(o["site"] for o in run.outcomes if o["code"] == 201)
    # and Locust's stats count one request per order, next to what the operators polled
    orders = run.stats_row("POST", "/v1/orders")
    assert orders is not None, run.stats
    assert int(orders["Request Count"]) == len(run.outcomes)
    assert int(orders["Failure Count"]) == 0
    assert run.stats_row("GET", "/v1/sites") is not None
    assert run.stats_row("GET", "/v1/incidents") is not None


def test_a_peak_run_multiplies_the_order_rate_inside_its_window(stack: Stack, tmp_path: Path) -> None:
    # given a sale peak: 4 shoppers, five times as many from 3 s to 6 s of a 9 s run
    env = {
        "DRCTL_DRILL_WORLD": str(stack.world_path),
        "DRCTL_DRILL_INGEST_TOKEN": stack.tokens["ingest"],
        "DRCTL_DRILL_SHAPE": "peak",
        "DRCTL_DRILL_USERS": "4",
        "DRCTL_DRILL_DURATION_S": "9",
        "DRCTL_DRILL_PEAK_FACTOR": "5",
        "DRCTL_DRILL_PEAK_START_S": "3",
        "DRCTL_DRILL_PEAK_END_S": "6",
    }
    # when it runs
    run = run_locust(stack.base_url, tmp_path, env, timeout_s=40)
    # then every order is taken, and the spike (past its ramp-up) clearly outpaces the time around it
    assert run.code == 0, run.output[-3000:]
    assert {o["code"] for o in run.outcomes} <= TAKEN
    assert len({o["external_id"] for o in run.outcomes}) == len(run.outcomes)
    t0 = min(o["t"] for o in run.outcomes)
    inside = orders_per_s(run.outcomes, t0, 4.0, 6.0)
    before = orders_per_s(run.outcomes, t0, 0.5, 3.0)
    after = orders_per_s(run.outcomes, t0, 7.0, 9.0)
    assert inside > 2 * max(before, after), f"{inside:.1f}/s in the peak, {before:.1f} and {after:.1f} around"


def test_an_order_refused_with_503_is_retried_with_the_same_body_then_recorded_once(tmp_path: Path) -> None:
    # given a control plane that answers every order with 503 (as a proxy in front of a dead one would)
    with webhook_receiver() as refuser:
        refuser.fail_with(503)
        env = {
            "DRCTL_DRILL_WORLD": str(ROOT / "examples" / "kr-retail" / "world.yaml"),
            "DRCTL_DRILL_INGEST_TOKEN": "drctl_not-checked-by-this-server",
            "DRCTL_DRILL_USERS": "1",
            "DRCTL_DRILL_DURATION_S": "1",
        }
        # when a shopper tries to order through it
        run = run_locust(refuser.base_url, tmp_path, env, timeout_s=30)
        tries = refuser.requests
    # then each order was sent five times with one body, and only its final answer is recorded
    assert run.code == 1, "a run whose orders all failed must not exit 0"
    assert run.outcomes, run.output[-3000:]
    for outcome in run.outcomes:
        sent = [t.raw for t in tries if t.body["external_id"] == outcome["external_id"]]
        assert len(sent) == 5 and len(set(sent)) == 1, f"{len(sent)} tries, {len(set(sent))} bodies"
        assert outcome["code"] == 503 and outcome["attempts"] == 5
        assert outcome["order_id"] is None and outcome["site"] is None
    orders = run.stats_row("POST", "/v1/orders")
    assert orders is not None and int(orders["Request Count"]) == len(run.outcomes)


def test_a_run_without_an_ingest_token_stops_before_any_request(tmp_path: Path) -> None:
    # given no DRCTL_DRILL_INGEST_TOKEN, when locust starts against a receiver
    with webhook_receiver() as receiver:
        run = run_locust(receiver.base_url, tmp_path, {"DRCTL_DRILL_DURATION_S": "1"}, timeout_s=30)
        sent = receiver.requests
    # then it exits non-zero naming the variable, having sent nothing
    assert run.code != 0
    assert "DRCTL_DRILL_INGEST_TOKEN is not set" in run.output
    assert sent == []

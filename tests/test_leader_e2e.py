"""Two control-plane processes on one PostgreSQL: one leader probes, and a SIGKILL hands over the lead."""

from __future__ import annotations

import math
import signal
import time
from pathlib import Path

import pytest

from chaos.sim_process import SimProcess, wait_until

from harness import ControlPlane, control_plane, prepare_database, start_simulator, write_test_world

pytestmark = pytest.mark.e2e

INTERVAL_S = 1.0
SETTINGS = {
    "DRCTL_PROBE_INTERVAL_S": str(INTERVAL_S),
    "DRCTL_PROBE_TIMEOUT_S": "0.9",
    "DRCTL_LEADER_POLL_S": "0.25",
    "DRCTL_ALERT_EVAL_INTERVAL_S": "1",
}
TARGETS = ("icheon", "busan", "cj-logistics")


def leads(cp: ControlPlane, token: str) -> bool:
    try:
        with cp.client(token, timeout=2) as c:
            return bool(c.get("/v1/scheduler").json()["leader"])
    except Exception:
        return False  # a killed process leads nothing


def health_probes(sim: SimProcess) -> dict[str, int]:
    return {t: int(sim.stats(t)["requests"].get("GET /health", 0)) for t in TARGETS}


def probes_over(sim: SimProcess, seconds: float) -> tuple[dict[str, int], float]:
    """Health requests each target received during a window, and the window's length."""
    before, t0 = health_probes(sim), time.monotonic()
    time.sleep(seconds)
    after, t1 = health_probes(sim), time.monotonic()
    return {t: after[t] - before[t] for t in TARGETS}, t1 - t0


def assert_once_per_interval(counts: dict[str, int], elapsed: float) -> None:
    # one probe per interval, give or take the one in flight at either edge: two leaders would double it
    lo, hi = math.floor(elapsed / INTERVAL_S) - 1, math.ceil(elapsed / INTERVAL_S) + 1
    assert all(lo <= n <= hi for n in counts.values()), (counts, elapsed, lo, hi)


def test_two_processes_probe_once_per_interval_and_sigkill_hands_over_within_two_intervals(
    pg_url: str, tmp_path: Path
) -> None:
    world, path = write_test_world(tmp_path / "world.yaml")
    tokens = prepare_database(pg_url, world)
    viewer = tokens["viewer"]
    with (
        start_simulator(path) as sim,
        control_plane(pg_url, tmp_path, SETTINGS) as a,
        control_plane(pg_url, tmp_path, SETTINGS) as b,
    ):
        # given two replicas, exactly one leads
        assert wait_until(lambda: leads(a, viewer) or leads(b, viewer), 5)
        assert leads(a, viewer) != leads(b, viewer)
        leader, follower = (a, b) if leads(a, viewer) else (b, a)

        # then each target is probed once per interval, not once per replica
        counts, elapsed = probes_over(sim, 5.0)
        assert_once_per_interval(counts, elapsed)

        # when the leader is killed without a chance to clean up
        leader.proc.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        leader.proc.wait(5)

        # then the other process leads within two intervals and probing goes on at the same rate
        assert wait_until(lambda: leads(follower, viewer), 2 * INTERVAL_S, 0.05)
        handover_s = time.monotonic() - killed_at
        assert handover_s <= 2 * INTERVAL_S, handover_s
        counts, elapsed = probes_over(sim, 4.0)
        assert_once_per_interval(counts, elapsed)
        with follower.client(viewer) as c:
            jobs = {j["id"] for j in c.get("/v1/scheduler").json()["jobs"]}
        assert {"probe:site:icheon", "probe:integration:cj-logistics", "evaluate-alerts"} <= jobs

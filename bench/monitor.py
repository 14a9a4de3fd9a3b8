"""bench/monitor: how fast probes see a DC die and come back, and how fast a killed leader is replaced.

In one run, on a fresh PostgreSQL database, with real simulated DCs and `drctl serve` processes:
1. detection: a DC is put `down` `--trials` times; seconds from the fault to the stored `down`
   transition, beside the configured interval x failure threshold, and back to `healthy` beside
   interval x success threshold;
2. hand-over: two replicas; the leader is SIGKILLed `--trials` times (a fresh replica replaces it
   each time); seconds until the other one leads, beside the bound of two probe intervals.
Medians are quoted; every trial is listed.

Run: .venv/bin/python -m bench.monitor [--trials 5] [--interval 1.0]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.intake import bench_world, fresh_database, log, prepare
from chaos.ports import free_port
from chaos.sim_process import SimProcess, targets_from_world, wait_until
from control_plane.world.loader import load_world_file

FAILURES, SUCCESSES = 3, 2


class Replica:
    """One `drctl serve` process we may SIGKILL."""

    def __init__(self, env: dict[str, str], tmp: Path, token: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._token = token
        self._log = (tmp / f"serve-{self.port}.log").open("wb")
        argv = [sys.executable, "-m", "control_plane", "serve", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            argv, env={**os.environ, **env}, stdout=self._log, stderr=subprocess.STDOUT
        )
        if not wait_until(lambda: self._get("/readyz") is not None or self.proc.poll() is not None, 60, 0.1):
            raise RuntimeError(f"replica on {self.port} did not start")

    def _get(self, path: str) -> Any:
        try:
            resp = httpx.get(
                self.base + path,
                headers={"Authorization": f"Bearer {self._token}"},
                timeout=2,
                trust_env=False,
            )
        except httpx.HTTPError:
            return None
        return resp.json() if resp.status_code == 200 else None

    def leads(self) -> bool:
        status = self._get("/v1/scheduler")
        return bool(status and status["leader"])

    def health(self, target: str) -> dict[str, Any] | None:
        return self._get(f"/v1/health-checks/{target}")  # type: ignore[no-any-return]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()


def transition_after(replica: Replica, target: str, to: str, since: datetime, timeout_s: float) -> float:
    """Seconds from `since` to the stored transition of `target` to `to`."""

    def found() -> float | None:
        check = replica.health(target) or {"transitions": []}
        times = [
            datetime.fromisoformat(t["at"])
            for t in check["transitions"]
            if t["to_health"] == to and datetime.fromisoformat(t["at"]) >= since
        ]
        return (min(times) - since).total_seconds() if times else None

    if not wait_until(lambda: found() is not None, timeout_s, 0.05):
        raise RuntimeError(f"{target} never became {to}")
    value = found()
    assert value is not None
    return value


def measure_detection(sim: SimProcess, replica: Replica, trials: int, interval: float) -> dict[str, Any]:
    detect, recover = [], []
    for n in range(trials):
        wait_until(lambda: (replica.health("site:icheon") or {}).get("health") == "healthy", 30, 0.05)
        time.sleep(interval * (n % 3) / 3)  # the fault lands at different points of the probe cycle
        at = datetime.now(UTC)
        sim.set_fault("icheon", "down")
        detect.append(transition_after(replica, "site:icheon", "down", at, interval * FAILURES + 10))
        at = datetime.now(UTC)
        sim.clear_fault("icheon")
        recover.append(transition_after(replica, "site:icheon", "healthy", at, interval * SUCCESSES + 10))
        log(f"detection trial {n + 1}: down after {detect[-1]:.2f} s, healthy after {recover[-1]:.2f} s")
    return {
        "detect_s": {"median": round(statistics.median(detect), 3), "all": [round(x, 3) for x in detect]},
        "detect_expected_s": interval * FAILURES,
        "recover_s": {"median": round(statistics.median(recover), 3), "all": [round(x, 3) for x in recover]},
        "recover_expected_s": interval * SUCCESSES,
    }


def measure_handover(
    env: dict[str, str], tmp: Path, token: str, trials: int, interval: float
) -> dict[str, Any]:
    replicas = [Replica(env, tmp, token), Replica(env, tmp, token)]
    times = []
    try:
        for n in range(trials):
            if not wait_until(lambda pair=tuple(replicas): sum(r.leads() for r in pair) == 1, 10, 0.05):
                raise RuntimeError("no single leader among the replicas")
            leader = next(r for r in replicas if r.leads())
            follower = next(r for r in replicas if r is not leader)
            leader.proc.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            if not wait_until(follower.leads, 30, 0.02):
                raise RuntimeError("the follower never took the lead")
            times.append(time.monotonic() - killed)
            log(f"hand-over trial {n + 1}: {times[-1]:.3f} s")
            leader.stop()
            replicas = [follower, Replica(env, tmp, token)]
    finally:
        for r in replicas:
            r.stop()
    return {
        "handover_s": {"median": round(statistics.median(times), 3), "all": [round(x, 3) for x in times]},
        "handover_bound_s": 2 * interval,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--interval", type=float, default=1.0, help="probe interval, seconds")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="drctl-bench-monitor-"))
    world_path = bench_world(tmp)
    world, model = load_world_file(world_path)
    result: dict[str, Any] = {"benchmark": "monitor", "database": "postgresql", "trials": args.trials,
                              "probe_interval_s": args.interval, "failure_threshold": FAILURES,
                              "success_threshold": SUCCESSES}  # fmt: skip
    with fresh_database() as url, SimProcess(targets_from_world(world), model.simulator.admin_port) as sim:
        token = prepare(url, world_path)
        env = {
            "DRCTL_DATABASE_URL": url,
            "DRCTL_LOG_LEVEL": "WARNING",
            "DRCTL_PROBE_INTERVAL_S": str(args.interval),
            "DRCTL_PROBE_TIMEOUT_S": str(args.interval * 0.8),
            "DRCTL_PROBE_FAILURE_THRESHOLD": str(FAILURES),
            "DRCTL_PROBE_SUCCESS_THRESHOLD": str(SUCCESSES),
            "DRCTL_LEADER_POLL_S": str(args.interval / 4),
        }
        one = Replica(env, tmp, token)
        try:
            result.update(measure_detection(sim, one, args.trials, args.interval))
        finally:
            one.stop()
        result.update(measure_handover(env, tmp, token, args.trials, args.interval))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""bench/runbook: seconds from a DC going down to its runbook waiting for approval, and from the
approval to the failover done, beside the same failover called directly by an operator.

In each run, on a fresh PostgreSQL database, with the simulator's DCs and `drctl serve`: N orders
(1,000 by default) are placed at Icheon; Icheon is put down; the built-in probes and alert engine
fire SiteDown, which starts the `dc-outage` runbook. Reported: detect-to-waiting seconds (probes,
alert `for`, trigger, first steps), approve-to-failed-over seconds, and, in a second world of the
same shape, the direct `POST /v1/sites/icheon/failover` of the same orders: the ratio is what the
runbook engine adds to the failover it drives.

Run: .venv/bin/python -m bench.runbook [--orders 1000] [--runs 3]
Needs PostgreSQL on 127.0.0.1:5432.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.failover import VICTIM, orders_for_victim, post_all, prepare
from bench.intake import bench_world, fresh_database, log, serve_argv, server
from chaos.ports import free_port
from chaos.sim_process import SimProcess, targets_from_world, wait_until
from control_plane.world.loader import load_world_file

FAST = {
    "DRCTL_LOG_LEVEL": "WARNING",
    "DRCTL_PROBE_INTERVAL_S": "0.5",
    "DRCTL_PROBE_TIMEOUT_S": "0.4",
    "DRCTL_PROBE_FAILURE_THRESHOLD": "2",
    "DRCTL_ALERT_EVAL_INTERVAL_S": "0.25",
    "DRCTL_ALERT_FOR_S": json.dumps({"SiteDown": 0.5}),
    "DRCTL_RUNBOOK_TICK_S": "0.25",
    "DRCTL_CANCEL_SETTLE_S": "1",
}


def _get(base: str, token: str, path: str) -> Any:
    resp = httpx.get(
        f"{base}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30, trust_env=False
    )
    resp.raise_for_status()
    return resp.json()


def _post(base: str, token: str, path: str, body: dict[str, Any]) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    resp = httpx.post(f"{base}{path}", headers=headers, json=body, timeout=600, trust_env=False)
    resp.raise_for_status()
    return resp.json()


def _until(check: Callable[[], Any], what: str, timeout_s: float = 120) -> float:
    started = time.perf_counter()
    if not wait_until(check, timeout_s, 0.05):
        raise RuntimeError(f"{what} did not happen within {timeout_s} s")
    return time.perf_counter() - started


def one_run(orders: int, seed: int, via_runbook: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="drctl-bench-runbook-") as tmp, fresh_database() as url:
        world_path = bench_world(Path(tmp))
        toks = prepare(url, world_path)
        world, model = load_world_file(world_path)
        port = free_port()
        with (
            SimProcess(targets_from_world(world), model.simulator.admin_port) as sim,
            server(
                serve_argv(port, 1), {"DRCTL_DATABASE_URL": url, **FAST}, port, Path(tmp) / "cp.log"
            ) as base,
        ):
            post_all(base, toks["ingest"], orders_for_victim(world_path, orders, seed))
            op = toks["operator"]
            sim.set_fault(VICTIM, mode="down")  # both ways move the orders of a DC that is down
            if not via_runbook:
                started = time.perf_counter()
                _post(base, op, f"/v1/sites/{VICTIM}/failover", {"reason": "bench: direct"})
                return {"failover_s": time.perf_counter() - started}

            def waiting() -> bool:
                found = _get(base, op, "/v1/runbook-executions?runbook=dc-outage")
                return bool(found) and found[0]["status"] == "waiting_approval"

            detect = _until(waiting, "the runbook waiting for approval")
            ex_id = _get(base, op, "/v1/runbook-executions?runbook=dc-outage")[0]["id"]
            started = time.perf_counter()
            _post(base, op, f"/v1/runbook-executions/{ex_id}/approve", {"comment": "bench"})

            def failed_over() -> bool:
                steps = _get(base, op, f"/v1/runbook-executions/{ex_id}")["steps"]
                return any(s["step"] == "failover" and s["status"] == "succeeded" for s in steps)

            _until(failed_over, "the failover step")
            return {"detect_to_waiting_s": detect, "failover_s": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    direct, runbook = [], []
    for i in range(args.runs):
        direct.append(one_run(args.orders, 200 + i, via_runbook=False))
        runbook.append(one_run(args.orders, 200 + i, via_runbook=True))
        log(f"run {i + 1}: direct {direct[-1]['failover_s']:.2f} s; runbook {runbook[-1]}")
    median = statistics.median
    direct_s = median(r["failover_s"] for r in direct)
    via_s = median(r["failover_s"] for r in runbook)
    print(
        json.dumps(
            {
                "bench": "runbook",
                "orders": args.orders,
                "runs": args.runs,
                "detect_to_waiting_s_median": round(median(r["detect_to_waiting_s"] for r in runbook), 3),
                "approve_to_failed_over_s_median": round(via_s, 3),
                "direct_failover_s_median": round(direct_s, 3),
                "runbook_over_direct": round(via_s / direct_s, 2),
            }
        )
    )


if __name__ == "__main__":
    main()

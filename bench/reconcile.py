"""bench/reconcile: seconds for `POST /v1/reconciliations` over N orders, beside reading the ledgers.

In one run, on a fresh PostgreSQL database, with the simulator's DCs and `drctl serve`: N orders
(5,000 by default) are posted by 16 clients; then a share of them (10 %) is deleted from the store,
as a restore of an older backup would. Reported, side by side: the seconds to read every DC's
listing alone (`GET {wms_url}/orders`, page by page: the floor any reconciliation pays), the
report's seconds (median of --runs), its ratio to that floor, the repair's seconds for the lost
orders, and whether the report named exactly the deleted orders and the check after the repair
was clean.

Run: .venv/bin/python -m bench.reconcile [--orders 5000] [--lost 0.1] [--runs 3]
Needs PostgreSQL on 127.0.0.1:5432.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import delete, select

from bench.failover import post_all, prepare
from bench.intake import bench_world, fresh_database, log, serve_argv, server
from chaos.order_stream import OrderFactory
from chaos.ports import free_port
from chaos.sim_process import SimProcess, targets_from_world
from control_plane.store.db import make_engine
from control_plane.store.tables import OrderRow
from control_plane.world.loader import load_world_file


def read_ledgers(wms_urls: list[str]) -> tuple[float, int]:
    """Every DC's listing, page by page, as the reconciler reads it: seconds and entries."""
    started, entries = time.perf_counter(), 0
    with httpx.Client(timeout=30, trust_env=False) as http:
        for url in wms_urls:
            after: str | None = "0"
            while after is not None:
                page = http.get(f"{url}/orders", params={"after": after, "limit": 1000}).json()
                entries += len(page["orders"])
                after = page["next"]
    return time.perf_counter() - started, entries


def reconcile(base: str, token: str, **body: Any) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    resp = httpx.post(
        f"{base}/v1/reconciliations",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=900,
        trust_env=False,
    )
    resp.raise_for_status()
    return time.perf_counter() - started, resp.json()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=5000)
    parser.add_argument("--lost", type=float, default=0.1, help="share of the orders the store loses")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="drctl-bench-reconcile-") as tmp, fresh_database() as url:
        world_path = bench_world(Path(tmp))
        toks = prepare(url, world_path)
        world, model = load_world_file(world_path)
        factory = OrderFactory(world, seed=7)
        port = free_port()
        env = {"DRCTL_DATABASE_URL": url, "DRCTL_LOG_LEVEL": "WARNING"}
        with (
            SimProcess(targets_from_world(world), model.simulator.admin_port),
            server(serve_argv(port, args.workers), env, port, Path(tmp) / "cp.log") as base,
        ):
            log(f"posting {args.orders} orders")
            post_all(base, toks["ingest"], [factory.order() for _ in range(args.orders)])
            _, first = reconcile(base, toks["operator"])
            if not first["clean"]:
                raise RuntimeError(f"not clean before the loss: {first['counts']}")
            engine = make_engine(url, pool_size=1)
            with engine.begin() as c:
                ids = sorted(c.scalars(select(OrderRow.id)))
                lost = set(random.Random(11).sample(ids, int(len(ids) * args.lost)))
                c.execute(delete(OrderRow).where(OrderRow.id.in_(sorted(lost))))  # lines etc. cascade
            engine.dispose()
            floors, checks, report = [], [], {}
            for i in range(args.runs):
                floor, entries = read_ledgers([s.wms_url for s in world.sites])
                seconds, report = reconcile(base, toks["operator"])
                floors.append(floor)
                checks.append(seconds)
                log(f"run {i + 1}: ledgers {floor:.2f} s ({entries} entries), report {seconds:.2f} s")
            named = {f["order_id"] for f in report["findings"]}
            repair_s, repaired = reconcile(base, toks["operator"], repair=True, reason="bench: restored")
            _, after = reconcile(base, toks["operator"])
    check, floor = statistics.median(checks), statistics.median(floors)
    print(
        json.dumps(
            {
                "bench": "reconcile",
                "orders": args.orders,
                "lost": len(lost),
                "runs": args.runs,
                "ledger_read_seconds_median": round(floor, 3),
                "report_seconds_median": round(check, 3),
                "report_seconds_runs": [round(s, 3) for s in checks],
                "report_over_ledger_read": round(check / floor, 2),
                "orders_per_s_report": round(args.orders / check, 1),
                "repair_seconds": round(repair_s, 3),
                "repaired": sum(1 for f in repaired["findings"] if f["repaired"]),
                "named_exactly_the_lost": named == lost,
                "clean_after_repair": after["clean"],
            }
        )
    )


if __name__ == "__main__":
    main()

"""Real parts for tests: databases, a world on free ports, the simulator and a control plane process."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import yaml
from sqlalchemy import Engine, insert

from bia.history import generate_history
from bia.params import BiaParams
from chaos.ports import free_port
from chaos.sim_process import SimProcess, control_plane_ready, targets_from_world, wait_until
from control_plane.auth import repository as tokens
from control_plane.bia_runs.service import record_history_run
from control_plane.domain import World
from control_plane.store.db import make_engine, make_session_factory
from control_plane.store.migrate import upgrade
from control_plane.store.tables import OrderLineRow, OrderRow
from control_plane.world.loader import load_world_file
from control_plane.world.repository import save_world

ROOT = Path(__file__).resolve().parent.parent
# every token the suite issues and every control-plane log it produces: checked at the end of the
# session (conftest.no_token_in_any_log) — no token may reach a log line
ISSUED_TOKENS: list[str] = []
CONTROL_PLANE_LOGS: list[Path] = []
SAMPLE_WORLD = ROOT / "examples" / "kr-retail" / "world.yaml"


def write_test_world(path: Path, capacity_scale: int = 100, stock_scale: int = 10) -> tuple[World, Path]:
    """The sample world on free ports, with room for test traffic (capacity and stock scaled)."""
    data = yaml.safe_load(SAMPLE_WORLD.read_text())
    data["simulator"]["admin_port"] = free_port()
    for site in data["sites"]:
        site["wms_url"] = f"http://127.0.0.1:{free_port()}"
        site["capacity_per_hour"] *= capacity_scale
    for integ in data["integrations"]:
        integ["health_url"] = f"http://127.0.0.1:{free_port()}/health"
    for per_sku in data["stock"].values():
        for sku in per_sku:
            per_sku[sku] *= stock_scale
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    world, _ = load_world_file(path)
    return world, path


def prepare_database(url: str, world: World) -> dict[str, str]:
    """Migrate, load the world and create one token per role; return role -> token."""
    engine = make_engine(url, pool_size=2)
    try:
        upgrade(engine)
        now = datetime.now(UTC)
        with make_session_factory(engine).begin() as s:
            save_world(s, world, now)
            issued = {
                role: tokens.create_token(s, f"test-{role}-{time.time_ns()}", role, now)
                for role in tokens.ALL_ROLES
            }
            ISSUED_TOKENS.extend(issued.values())
            return issued
    finally:
        engine.dispose()


def start_simulator(world_path: Path) -> SimProcess:
    world, model = load_world_file(world_path)
    return SimProcess(targets_from_world(world), model.simulator.admin_port)


@dataclass
class ControlPlane:
    base_url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def client(self, token: str, **kw: Any) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {token}"}, trust_env=False, **kw
        )

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


FAST_SETTINGS = {
    "DRCTL_BREAKER_FAIL_MAX": "5",
    "DRCTL_BREAKER_RESET_TIMEOUT_S": "1.0",
    "DRCTL_BREAKER_SUCCESS_THRESHOLD": "1",
    "DRCTL_DC_CONNECT_TIMEOUT_S": "0.5",
    "DRCTL_DC_READ_TIMEOUT_S": "0.5",
    "DRCTL_DC_CANCEL_TIMEOUT_S": "3.0",
    "DRCTL_RETRY_INTERVAL_S": "0.2",
    "DRCTL_RETRY_BACKOFF_BASE_S": "0.2",
    "DRCTL_RETRY_BACKOFF_MAX_S": "1.0",
    "DRCTL_CANCEL_SETTLE_S": "1.0",
    "DRCTL_STATE_REFRESH_S": "0.5",
    # a test's orders are not a history: no scheduled BIA replaces the targets a test relies on
    "DRCTL_BIA_SCHEDULE_S": "0",
}


@contextlib.contextmanager
def control_plane(
    db_url: str, log_dir: Path, extra_env: dict[str, str] | None = None, workers: int = 1
) -> Iterator[ControlPlane]:
    """Run `drctl serve` as a child process (its own GIL, as in production) and wait until ready."""
    port = free_port()
    env = {**os.environ, **FAST_SETTINGS, "DRCTL_DATABASE_URL": db_url, **(extra_env or {})}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log_path = log_dir / f"control-plane-{port}.log"
    CONTROL_PLANE_LOGS.append(log_path)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "control_plane", "serve", "--port", str(port), "--workers", str(workers)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    cp = ControlPlane(f"http://127.0.0.1:{port}", proc, log_path)
    try:
        if not wait_until(lambda: control_plane_ready(cp.base_url) or proc.poll() is not None, 30):
            raise RuntimeError("control plane did not become ready")
        if proc.poll() is not None:
            raise RuntimeError(f"control plane exited early:\n{cp.logs()[-3000:]}")
        yield cp
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def engine_for(url: str) -> Engine:
    return make_engine(url, pool_size=2)


def record_sample_bia(url: str, days: int = 1, seed: int = 3) -> None:
    """Keep a BIA over `days` of the sample retailer's generated history (its real volumes) as the
    latest run, as `make demo` does: the failover's options and target_stock read it."""
    sample, _ = load_world_file(SAMPLE_WORLD)
    engine = engine_for(url)
    with make_session_factory(engine).begin() as s:
        history = generate_history(sample, days, seed)
        record_history_run(s, "test", "generated", history, BiaParams(), datetime.now(UTC))
    engine.dispose()


def store_history(url: str, frame: pl.DataFrame) -> None:
    """Write a generated history into the orders tables, as if the control plane had taken it."""
    orders = frame.unique("order_id", keep="first", maintain_order=True)
    now = datetime.now(UTC)
    order_rows = [
        {
            "id": r["order_id"],
            "channel": r["channel"],
            "external_id": r["order_id"],
            "customer_id": r["customer_id"],
            "customer_name": "-",
            "customer_locale": "ko",
            "notify_via": "email",
            "ship_region": r["region"],
            "ship_postal_code": r["postal_code"],
            "ship_lat": 37.5,
            "ship_lon": 127.0,
            "placed_at": r["placed_at"].astimezone(UTC),
            "promised_by": r["placed_at"].astimezone(UTC),
            "status": "accepted",
            "site": r["site"],
            "total": 0,
            "attempts_count": 1,
            "created_at": now,
            "updated_at": now,
        }
        for r in orders.iter_rows(named=True)
    ]
    line_rows = [
        {
            "order_id": r["order_id"],
            "line_no": i,
            "sku": r["sku"],
            "qty": r["qty"],
            "unit_price": r["unit_price"],
        }
        for i, r in enumerate(frame.iter_rows(named=True))
    ]
    engine = engine_for(url)
    with engine.begin() as c:
        c.execute(insert(OrderRow), order_rows)
        c.execute(insert(OrderLineRow), line_rows)
    engine.dispose()

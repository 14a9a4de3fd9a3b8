"""`drctl demo`: the sample world on the embedded store, simulator, control plane, order stream."""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import uvicorn
from rich.console import Console

from chaos.order_stream import OrderFactory
from chaos.sim_process import SimProcess, targets_from_world
from control_plane.app import create_app
from control_plane.auth import repository as tokens
from control_plane.logs import configure_logging
from control_plane.settings import Settings
from control_plane.store.db import make_engine, make_session_factory
from control_plane.store.migrate import upgrade
from control_plane.world.loader import load_world_file
from control_plane.world.repository import save_world

console = Console()


def _stream_orders(
    base_url: str, token: str, factory: OrderFactory, rate: float, stop: threading.Event
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=10, trust_env=False) as http:
        while not stop.wait(1 / rate):
            # the control plane may be starting or stopping: the stream just goes on
            with contextlib.suppress(httpx.HTTPError):
                http.post("/v1/orders", json=factory.order())


def run_demo(settings: Settings, world_path: Path, port: int, rate: float) -> None:
    configure_logging("WARNING", json=False)
    world, model = load_world_file(world_path)
    engine = make_engine(settings.database_url, pool_size=2)
    upgrade(engine)
    now = datetime.now(UTC)
    with make_session_factory(engine).begin() as s:
        save_world(s, world, now)
        token = tokens.create_token(s, f"demo-admin-{now:%Y%m%d%H%M%S%f}", "admin", now)
        tokens.audit(s, now, "demo", "token.create", "token:demo-admin", after={"role": "admin"})
    engine.dispose()
    console.print(f"[bold]drctl demo[/] world {world.name!r} in {settings.database_url}")
    sim = SimProcess(targets_from_world(world), model.simulator.admin_port)
    stop = threading.Event()
    base = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=port, log_level="warning", access_log=False
        )
    )
    stream = threading.Thread(
        target=_stream_orders,
        args=(base, token, OrderFactory(world, seed=int(time.time())), rate, stop),
        daemon=True,
    )
    console.print(
        f"  simulator admin   {sim.admin_url}/_sim/targets  (faults: PUT /_sim/targets/NAME/faults)"
    )
    console.print(f"  control plane     {base}/docs")
    console.print(f"  sites             curl -H 'Authorization: Bearer $TOKEN' {base}/v1/sites")
    console.print(f"  metrics           {base}/metrics")
    console.print(f"  order stream      {rate:g} orders/s")
    console.print("  admin token (shown once):")
    print(f"  {token}", flush=True)
    console.print("Ctrl-C stops everything.")
    try:
        stream.start()
        server.run()
    finally:
        stop.set()
        sim.stop()

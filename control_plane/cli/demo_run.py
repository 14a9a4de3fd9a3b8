"""`drctl demo`: the sample world on the embedded store, simulator, control plane, order stream.

Every child ends with the demo, however it is stopped. SIGINT, SIGTERM and SIGHUP all stop the
control plane in order and then the simulator (`_Stopping`): uvicorn handles SIGINT and SIGTERM
itself while it runs and re-raises them afterwards, which without a handler of ours would end the
process (SIGTERM's default) before the cleanup; SIGHUP it does not handle at all. A demo killed
outright (SIGKILL, OOM) runs no cleanup: a watchdog process (`demo_watchdog`) then ends the
simulator when the demo's pipe to it closes.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

import httpx
import uvicorn
from pydantic import SecretStr
from rich.console import Console

from bia.history import default_orders_per_day, generate_history
from bia.params import BiaParams
from bia.results import site_targets
from chaos.order_stream import OrderFactory
from chaos.sim_process import SimProcess, targets_from_world
from control_plane.app import create_app
from control_plane.auth import repository as tokens
from control_plane.bia_runs.service import record_history_run
from control_plane.domain import World
from control_plane.logs import configure_logging
from control_plane.orders.signatures import site_event_secret
from control_plane.settings import Settings
from control_plane.store.db import make_engine, make_session_factory
from control_plane.store.migrate import upgrade
from control_plane.world.loader import load_world_file
from control_plane.world.repository import save_world

console = Console()
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
WATCHDOG = Path(__file__).with_name("demo_watchdog.py")


class _Stopping:
    """SIGINT, SIGTERM and SIGHUP stop the demo the same way, so that its cleanup always runs.

    While the control plane serves, a signal asks it to shut down in order (uvicorn's own handler
    does this for SIGINT and SIGTERM and re-raises them when done, landing here); otherwise it
    raises KeyboardInterrupt (SIGINT) or SystemExit(128 + signal) at once. While a child is being
    started, or the cleanup runs, a signal is only remembered: no child can be left half-started,
    no cleanup cut short (both are bounded in time). A second signal during the orderly shutdown
    raises at once.
    """

    def __init__(self) -> None:
        self.server: uvicorn.Server | None = None
        self.signum: int | None = None
        self._holding = False

    def handle(self, signum: int, _: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        if self._holding:
            return
        if self.server is not None and not self.server.should_exit:
            self.server.should_exit = True
            return
        self.raise_it()

    def raise_it(self) -> None:
        if self.signum is None:
            return
        if self.signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + self.signum)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        before = {sig: signal.signal(sig, self.handle) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in before.items():
                signal.signal(sig, handler)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Remember signals instead of acting on them inside this block."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False

    def hold_for_good(self) -> None:
        """From the cleanup on: signals are only remembered."""
        self._holding = True


class _Watchdog:
    """A process that ends the simulator if the demo dies without its cleanup (see `demo_watchdog`)."""

    def __init__(self, sim_pid: int) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-I", str(WATCHDOG), str(sim_pid)],
            stdin=subprocess.PIPE,
            start_new_session=True,  # out of reach of the terminal's Ctrl-C and hangup
        )

    def release(self) -> None:
        """The simulator is stopped: tell the watchdog, and let it go."""
        assert self._proc.stdin is not None
        with contextlib.suppress(OSError):
            self._proc.stdin.write(b"done")
            self._proc.stdin.close()
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)


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
    if settings.dc_event_secret is None:
        # the demo's DCs call back when they ship: a master secret for this run only
        settings = settings.model_copy(update={"dc_event_secret": SecretStr(secrets.token_hex(16))})
    world, model = load_world_file(world_path)
    engine = make_engine(settings.database_url, pool_size=2)
    upgrade(engine)
    now = datetime.now(UTC)
    with make_session_factory(engine).begin() as s:
        save_world(s, world, now)
        token = tokens.create_token(s, f"demo-admin-{now:%Y%m%d%H%M%S%f}", "admin", now)
        tokens.audit(s, now, "demo", "token.create", "token:demo-admin", after={"role": "admin"})
        with console.status(f"BIA over {DEMO_HISTORY_DAYS} days of generated order history…"):
            history = generate_history(
                world,
                days=DEMO_HISTORY_DAYS,
                seed=7,
                start=now.date() - timedelta(days=DEMO_HISTORY_DAYS),
                orders_per_day=_demo_orders_per_day(world),
            )
            result = record_history_run(
                s, "demo", f"generated:{DEMO_HISTORY_DAYS}d", history, BiaParams(), now
            )
    engine.dispose()
    console.print(f"[bold]drctl demo[/] world {world.name!r} in {settings.database_url}")
    tiers = ", ".join(
        f"{t.code} tier {t.tier} (RTO {t.rto_hours:g} h)" for t in site_targets(result).values()
    )
    console.print(f"  BIA               {history.height} order lines: {tiers}")
    stopping = _Stopping()
    with stopping.installed():
        _serve_demo(settings, world, model.simulator.admin_port, token, port, rate, stopping)


DEMO_SHIP_AFTER_S = 60.0  # how long a demo DC takes to ship an order it accepted
DEMO_HISTORY_DAYS = 28  # what the BIA reads at the start, so tiers and RTOs are filled in
DEMO_HISTORY_MAX_PER_DAY = 20_000  # the sample world's own load is ~16,000; a scaled-up world stays quick


def _demo_orders_per_day(world: World) -> int:
    return max(1, min(default_orders_per_day(world), DEMO_HISTORY_MAX_PER_DAY))


def _dcs_call_back(sim: SimProcess, world: World, base: str, settings: Settings) -> None:
    """Have every simulated DC ship what it accepted after a while and tell us, signed."""
    assert settings.dc_event_secret is not None
    master = settings.dc_event_secret.get_secret_value()
    for site in world.sites:
        sim.configure_events(site.code, base, site_event_secret(master, site.code), DEMO_SHIP_AFTER_S)


def _serve_demo(
    settings: Settings,
    world: World,
    admin_port: int,
    token: str,
    port: int,
    rate: float,
    stopping: _Stopping,
) -> None:
    sim: SimProcess | None = None
    watchdog: _Watchdog | None = None
    stop = threading.Event()
    try:
        with stopping.held():  # a child started is a child stopped: no signal in between
            sim = SimProcess(targets_from_world(world), admin_port)
            watchdog = _Watchdog(sim.pid)
        stopping.raise_it()  # a signal while they started: stop now
        base = f"http://127.0.0.1:{port}"
        _dcs_call_back(sim, world, base, settings)
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
        console.print(f"  dashboard         {base}/  (log in with the admin token below)")
        console.print(f"  control plane     {base}/docs")
        console.print(f"  sites             curl -H 'Authorization: Bearer $TOKEN' {base}/v1/sites")
        console.print(f"  metrics           {base}/metrics")
        console.print(f"  customer notices  {settings.notice_log_path} (after e.g. drctl failover icheon)")
        console.print(f"  order stream      {rate:g} orders/s")
        console.print("  admin token (shown once):")
        print(f"  {token}", flush=True)
        console.print("Ctrl-C (or SIGTERM, SIGHUP) stops everything.")
        stopping.server = server
        stopping.raise_it()
        stream.start()
        server.run()
        stopping.raise_it()  # stopped by a signal uvicorn does not re-raise (SIGHUP): exit as it says
    finally:
        stopping.hold_for_good()
        stop.set()
        if sim is not None:
            sim.stop()
        if watchdog is not None:
            watchdog.release()

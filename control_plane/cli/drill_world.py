"""The world a drill starts for itself: a store (PostgreSQL when DRCTL_DATABASE_URL is set, else a
SQLite file), the simulator, a control plane as its own process, and one token per role.

The drill then drives it over HTTP only, as it would a deployment given with `--target`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bia.engine import run_bia
from bia.history import DEFAULT_LOAD_FACTOR, generate_history
from bia.params import BiaParams
from chaos.ports import free_port
from chaos.sim_process import SimProcess, control_plane_ready, targets_from_world, wait_until
from control_plane.auth import repository as tokens
from control_plane.domain import DomainError
from control_plane.settings import Settings
from control_plane.store.db import make_engine, make_session_factory, scratch_database
from control_plane.store.migrate import upgrade
from control_plane.world.loader import load_world_file
from control_plane.world.repository import apply_bia_targets, save_world

BIA_DAYS = 28
# a world scaled up for load tests would otherwise generate a history of its whole capacity (a
# 100x world: 50 M order lines, more memory than the machine has); the sample world is ~19,000/day
BIA_MAX_ORDERS_PER_DAY = 20_000
# the control plane's own clocks a short-form drill scales with its pauses: left at full length, a
# breaker tripped in a 0.2x drill would still wait out its full reset timeout, past the end of the
# load, and the site would never be seen coming back
SCALED_SETTINGS = ("breaker_reset_timeout_s", "probe_interval_s")


def scaled_settings(time_scale: float, environ: Mapping[str, str]) -> dict[str, str]:
    """DRCTL_* variables for a world run at `time_scale`; a variable already set is left alone."""
    if time_scale >= 1.0:
        return {}
    fields = Settings.model_fields
    out = {}
    for name in SCALED_SETTINGS:
        var = f"DRCTL_{name.upper()}"
        if var not in environ:
            out[var] = f"{float(fields[name].default) * time_scale:g}"
    return out


class WorldFailed(DomainError):
    title = "Drill world failed"


@dataclass(frozen=True, slots=True)
class Issued:
    viewer: str
    operator: str
    ingest: str


class DrillWorld:
    """Start with `start()`, end with `stop()` (idempotent); `kill_and_restart` is the kill action."""

    def __init__(
        self, world_path: Path, workdir: Path, server_url: str | None, time_scale: float = 1.0
    ) -> None:
        """`server_url` (DRCTL_DATABASE_URL) picks PostgreSQL: the drill makes a scratch database on
        that server and drops it at the end, never writing into the database the URL names.
        `time_scale` below 1 shortens the control plane's breaker and probe clocks with the drill."""
        self.time_scale = time_scale
        self.world_path = world_path
        self.workdir = workdir
        self._server_url = server_url if server_url and server_url.startswith("postgres") else None
        self._scratch = contextlib.ExitStack()
        self.database_url = f"sqlite:///{workdir / 'drill.db'}"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.sim: SimProcess | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.tokens: Issued | None = None

    def start(self) -> None:
        world, model = load_world_file(self.world_path)
        if self._server_url is not None:
            self.database_url = self._scratch.enter_context(scratch_database(self._server_url, "drctl_drill"))
        engine = make_engine(self.database_url, pool_size=2)
        try:
            upgrade(engine)
            now = datetime.now(UTC)
            stamp = f"{now:%Y%m%d%H%M%S%f}"
            # the sites' RTO targets, which the drill holds its measured recovery against, come
            # from a BIA; a fresh world has no order history, so the BIA runs over a generated one
            capacity = sum(site.capacity_per_hour for site in world.sites)
            per_day = min(BIA_MAX_ORDERS_PER_DAY, round(capacity * 24 * DEFAULT_LOAD_FACTOR))
            history = generate_history(world, BIA_DAYS, seed=7, orders_per_day=per_day)
            bia = run_bia(history, world, BiaParams(), now=now)
            targets = {t.code: (t.tier, t.rto_hours, t.rpo_seconds) for t in bia.sites}
            with make_session_factory(engine).begin() as s:
                save_world(s, world, now)
                apply_bia_targets(s, targets, now)
                roles = ("viewer", "operator", "ingest")
                made = {r: tokens.create_token(s, f"drill-{r}-{stamp}", r, now) for r in roles}
                subject = f"token:drill-*-{stamp}"
                tokens.audit(s, now, "drill", "token.create", subject, after={"roles": list(roles)})
        finally:
            engine.dispose()
        self.tokens = Issued(**made)
        self.sim = SimProcess(targets_from_world(world), model.simulator.admin_port)
        self._serve()

    def _serve(self) -> None:
        env = {**os.environ, **scaled_settings(self.time_scale, os.environ)}
        env["DRCTL_DATABASE_URL"] = self.database_url
        # the drill's RTOs come from its seeded history: a scheduled BIA over the few minutes of the
        # drill's own orders must not replace them half-way
        env.setdefault("DRCTL_BIA_SCHEDULE_S", "0")
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        log = (self.workdir / "control-plane.log").open("ab")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "control_plane", "serve", "--port", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
        log.close()
        proc = self._proc
        up = wait_until(lambda: proc.poll() is not None or control_plane_ready(self.base_url), 60, 0.2)
        if not up or proc.poll() is not None:
            log_path = self.workdir / "control-plane.log"
            tail = log_path.read_text(errors="replace")[-1500:]
            raise WorldFailed(f"the control plane did not start (log {log_path}): {tail}")

    def kill_and_restart(self, restart_after_s: float) -> int:
        """SIGKILL the control plane, wait, start it again (as a supervisor would); its pid."""
        assert self._proc is not None
        pid = self._proc.pid
        self._proc.send_signal(signal.SIGKILL)
        self._proc.wait(10)
        time.sleep(restart_after_s)
        self._serve()
        return pid

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        sim, self.sim = self.sim, None
        if sim is not None:
            sim.stop()
        self._scratch.close()

"""Three replicas on one PostgreSQL behind nginx, under 16 clients; one SIGKILLed every few seconds.

A bounded loop kills a replica (the leader at least once), restarts it on its port, and moves on.
Afterwards every order taken is in exactly one DC ledger or held; nothing is left mid-dispatch (a
dead replica's dispatch leases ran out and another picked its orders up); the leader role moved.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from test_failover_under_load_e2e import Load, reconcile_live, wait_quiet

from chaos.order_stream import OrderFactory
from chaos.ports import free_port
from chaos.sim_process import control_plane_ready, wait_until

from harness import CONTROL_PLANE_LOGS, FAST_SETTINGS, prepare_database, start_simulator, write_test_world
from servers import nginx_balancer

# real servers under load but no timing bound: runs beside the other tests, not in the serial e2e phase
pytestmark = pytest.mark.load

KILLS = 3
SETTINGS = {
    **FAST_SETTINGS,
    "DRCTL_LEADER_POLL_S": "0.25",
    "DRCTL_DISPATCH_LEASE_S": "3",  # a dead replica's orders are someone else's after this
    "DRCTL_PROBE_INTERVAL_S": "1",
    "DRCTL_PROBE_TIMEOUT_S": "0.9",
}


class Replica:
    """One `drctl serve` on a fixed port, so that nginx's upstream list stays the same across restarts."""

    def __init__(self, db_url: str, log_dir: Path, token: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._env = {**os.environ, **SETTINGS, "DRCTL_DATABASE_URL": db_url}
        self._env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.log_path = log_dir / f"replica-{self.port}.log"
        CONTROL_PLANE_LOGS.append(self.log_path)
        self._token = token
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "control_plane", "serve", "--port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, env=self._env,
            )  # fmt: skip
        proc = self.proc
        assert wait_until(lambda: control_plane_ready(self.url) or proc.poll() is not None, 30, 0.1)
        assert proc.poll() is None, self.log_path.read_text(errors="replace")[-2000:]

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def leads(self) -> bool:
        try:
            resp = httpx.get(f"{self.url}/v1/scheduler", headers={"Authorization": f"Bearer {self._token}"},
                             timeout=2, trust_env=False)  # fmt: skip
            return bool(resp.json()["leader"])
        except (httpx.HTTPError, ValueError, KeyError):
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def test_replicas_killed_one_at_a_time_lose_and_double_nothing(pg_url: str, tmp_path: Path) -> None:
    world, path = write_test_world(tmp_path / "world.yaml")
    issued = prepare_database(pg_url, world)
    factory = OrderFactory(world, seed=41)
    bodies = [factory.order() for _ in range(6000)]
    replicas = [Replica(pg_url, tmp_path, issued["viewer"]) for _ in range(3)]
    leaders: list[int] = []
    try:
        with start_simulator(path) as sim:
            for r in replicas:
                r.start()
            assert wait_until(lambda: sum(r.leads() for r in replicas) == 1, 15, 0.1), "no single leader"
            with (
                nginx_balancer([r.port for r in replicas], tmp_path / "nginx") as lb,
                # a kill can cut a request off after its order committed: the client posts the same
                # body again (idempotent on its external id), as a real channel does
                Load(lb, issued["ingest"], bodies, tries=3) as load,
            ):
                assert wait_until(lambda: load.posted() >= 100, 60, 0.05), "the load never got going"
                for i in range(KILLS):
                    leader = next((r for r in replicas if r.leads()), None)
                    victim = leader if (i % 2 == 0 and leader is not None) else replicas[i % len(replicas)]
                    if victim is leader:
                        leaders.append(victim.port)
                    victim.kill()
                    posted = load.posted()
                    # the others take the orders, and one of them takes the lead
                    assert wait_until(lambda p=posted: load.posted() >= p + 60, 30, 0.05), "intake stalled"
                    others = [r for r in replicas if r is not victim]
                    assert wait_until(lambda o=others: any(r.leads() for r in o), 15, 0.1), "no new leader"
                    victim.start()
                    time.sleep(1.0)
            codes = [r.status_code for r in load.answers]
            assert codes and set(codes) <= {200, 201, 202}, sorted(set(codes))
            assert load.gave_up == 0
            assert leaders, "the leader was never killed"
            wait_quiet(pg_url)
            statuses = reconcile_live(pg_url, sim, world, ignore_victim=False)
            assert sum(statuses.values()) == len(codes)
    finally:
        for r in replicas:
            r.stop()

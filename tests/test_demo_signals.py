"""`drctl demo` ends every child with itself, however it is stopped: no stale simulator on its ports."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from chaos.ports import free_port
from chaos.sim_process import wait_until
from control_plane.world.loader import load_world_file

from harness import write_test_world

pytestmark = pytest.mark.e2e

START_TIMEOUT_S = 60
EXIT_TIMEOUT_S = 30
PORTS_FREE_TIMEOUT_S = 10


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:  # refused (or nothing there): not listening
            return False
        return True


def simulator_ports(world_path: Path) -> list[int]:
    world, model = load_world_file(world_path)
    ports = [model.simulator.admin_port]
    ports += [urlparse(s.wms_url).port or 80 for s in world.sites]
    ports += [urlparse(i.health_url).port or 80 for i in world.integrations]
    return ports


def healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def demo(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, list[int]]]:
    """`drctl demo` on free ports (a copied world), its own store, in its own process group."""
    _, world_path = write_test_world(tmp_path / "world.yaml")
    ports = simulator_ports(world_path)
    assert not [p for p in ports if listening(p)], "simulator ports taken before the demo started"
    port = free_port()
    env = {**os.environ, "DRCTL_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}"}
    with (tmp_path / "demo.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "control_plane", "demo", "--port", str(port), "--world", str(world_path),
             "--rate", "5"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        started = wait_until(lambda: healthy(base) or proc.poll() is not None, START_TIMEOUT_S, 0.2)
        assert started and proc.poll() is None, (tmp_path / "demo.log").read_text(errors="replace")
        yield proc, base, ports
    finally:
        # whatever the test found, nothing of this demo outlives it (its group is ours alone)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_demo_stopped_by_a_signal_stops_the_simulator_too(tmp_path: Path, sig: signal.Signals) -> None:
    with demo(tmp_path) as (proc, base, ports):
        assert all(listening(p) for p in ports[:6])  # the admin port and every DC's port
        proc.send_signal(sig)  # the demo alone, not its group: as `kill PID` or a closed terminal
        try:
            code = proc.wait(EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the demo did not exit within {EXIT_TIMEOUT_S} s of {sig.name}")
        assert code == 128 + sig, (tmp_path / "demo.log").read_text(errors="replace")
        assert not healthy(base)
        # the simulator was stopped before the demo exited: every port is free again
        wait_until(lambda: not any(listening(p) for p in ports), PORTS_FREE_TIMEOUT_S, 0.2)
        still = [p for p in ports if listening(p)]
        assert not still, f"still listening after the demo exited: {still}"


def test_demo_killed_outright_takes_the_simulator_with_it(tmp_path: Path) -> None:
    with demo(tmp_path) as (proc, _, ports):
        proc.kill()  # SIGKILL: no handler in the demo runs
        proc.wait(EXIT_TIMEOUT_S)
        freed = wait_until(lambda: not any(listening(p) for p in ports), PORTS_FREE_TIMEOUT_S + 10, 0.2)
        assert freed, f"still listening after the demo was killed: {[p for p in ports if listening(p)]}"

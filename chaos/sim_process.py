"""Start the simulator as a child process for a world, and drive its faults over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import httpx

from control_plane.domain import DomainError, World


@dataclass(frozen=True, slots=True)
class TargetSpec:
    name: str
    kind: str  # "dc" | "integration"
    port: int
    capacity_per_hour: int = 0


def targets_from_world(world: World) -> list[TargetSpec]:
    """Every site's WMS and every integration's health endpoint, by the port in its URL."""
    targets = [
        TargetSpec(s.code, "dc", urlparse(s.wms_url).port or 80, s.capacity_per_hour) for s in world.sites
    ]
    targets += [
        TargetSpec(i.code, "integration", urlparse(i.health_url).port or 80) for i in world.integrations
    ]
    return targets


def simulator_argv(targets: list[TargetSpec], admin_port: int) -> list[str]:
    argv = [sys.executable, "-m", "chaos.simulator", "--admin-port", str(admin_port)]
    for t in targets:
        if t.kind == "dc":
            argv += ["--dc", f"{t.name}={t.port}:{t.capacity_per_hour}"]
        else:
            argv += ["--integration", f"{t.name}={t.port}"]
    return argv


class SimulatorFailed(DomainError):
    title = "Simulator failed"


class SimAdmin:
    """A client of a running simulator's admin API: faults, ledgers, stats, DC events."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url.rstrip("/")
        self._http = httpx.Client(base_url=self.admin_url, timeout=10.0, trust_env=False)

    def targets(self) -> list[dict[str, Any]]:
        resp = self._http.get("/_sim/targets")
        resp.raise_for_status()
        body = resp.json()
        return list(body["targets"] if isinstance(body, dict) else body)

    def set_fault(self, target: str, mode: str, **params: Any) -> None:
        self._http.put(f"/_sim/targets/{target}/faults", json={"mode": mode, **params}).raise_for_status()

    def clear_fault(self, target: str) -> None:
        self._http.delete(f"/_sim/targets/{target}/faults").raise_for_status()

    def ledger(self, target: str, include_cancelled: bool = False) -> list[dict[str, Any]]:
        params = {"all": "true"} if include_cancelled else {}
        resp = self._http.get(f"/_sim/targets/{target}/ledger", params=params)
        resp.raise_for_status()
        return list(resp.json()["orders"])

    def stats(self, target: str) -> dict[str, Any]:
        resp = self._http.get(f"/_sim/targets/{target}/stats")
        resp.raise_for_status()
        return dict(resp.json())

    def configure_events(self, target: str, url: str, secret: str, ship_after_s: float | None) -> None:
        """Have `target` send signed DC events to the control plane at `url` (DESIGN §4)."""
        body = {"url": url, "secret": secret, "ship_after_s": ship_after_s}
        self._http.put(f"/_sim/targets/{target}/events", json=body).raise_for_status()

    def reset(self) -> None:
        self._http.post("/_sim/reset").raise_for_status()

    def close(self) -> None:
        self._http.close()


class SimProcess(SimAdmin):
    """A running simulator child process, with the client of its admin API."""

    def __init__(self, targets: list[TargetSpec], admin_port: int, ready_timeout_s: float = 60.0) -> None:
        self.specs = targets
        self._proc = subprocess.Popen(
            simulator_argv(targets, admin_port),
            stdout=subprocess.PIPE,
            stderr=None,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._wait_ready(ready_timeout_s)
        super().__init__(f"http://127.0.0.1:{admin_port}")

    def _wait_ready(self, timeout_s: float) -> None:
        assert self._proc.stdout is not None
        line_box: list[str] = []

        def read() -> None:
            assert self._proc.stdout is not None
            for line in self._proc.stdout:
                if line.startswith("simulator ready"):
                    line_box.append(line)
                    break

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout_s)
        if not line_box:
            code = self._proc.poll()
            self._proc.kill()
            why = f"exited with code {code} (see its message above)" if code is not None else "timed out"
            raise SimulatorFailed(f"the simulator did not start: {why}")
        # keep draining stdout so the child never blocks on a full pipe
        threading.Thread(target=lambda: [None for _ in self._proc.stdout or []], daemon=True).start()

    @property
    def pid(self) -> int:
        """The simulator process's pid (a watchdog of its parent ends it should the parent die)."""
        return self._proc.pid

    def stop(self) -> None:
        self._http.close()
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()

    def alive(self) -> bool:
        return self._proc.poll() is None

    def wait(self) -> int:
        return self._proc.wait()

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def wait_until(predicate: Any, timeout_s: float, interval_s: float = 0.1) -> bool:
    """Poll `predicate` until true or the time is up (bounded waits for tests and drills)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())


def control_plane_ready(base_url: str) -> bool:
    """Whether a control plane answers its readiness check (database reachable) right now."""
    try:
        return httpx.get(f"{base_url}/readyz", timeout=1, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False

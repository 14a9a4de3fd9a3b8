"""What actions and probes act on: the control plane's API, the simulator's admin API, the
processes the drill started, and what the run has seen so far (its orders and its fault window)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from chaos.sim_process import SimAdmin


@dataclass(frozen=True, slots=True)
class Tokens:
    viewer: str
    operator: str
    ingest: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """One order post of the load, as the shopper saw it (a line of Locust's outcomes file)."""

    t: float  # when the request started, epoch seconds
    latency_ms: float
    code: int
    region: str
    order_id: str | None
    status: str | None
    site: str | None
    passed_over: tuple[str, ...] = ()  # sites its route attempts could not use

    @property
    def done_at(self) -> float:
        return self.t + self.latency_ms / 1000

    @property
    def placed(self) -> bool:
        """Taken by the control plane: with a DC (accepted) or held for one."""
        return self.code in (200, 201, 202) and self.order_id is not None


class Outcomes:
    """Reads the outcomes file as Locust appends to it (whole lines only)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: list[Outcome] = []
        self._offset = 0
        self._lock = threading.Lock()

    def all(self) -> list[Outcome]:
        with self._lock:
            if self.path.exists():
                with self.path.open("rb") as f:
                    f.seek(self._offset)
                    chunk = f.read()
                end = chunk.rfind(b"\n") + 1
                for line in chunk[:end].splitlines():
                    if line.strip():
                        self._seen.append(_outcome(json.loads(line)))
                self._offset += end
            return list(self._seen)


def _outcome(raw: dict[str, Any]) -> Outcome:
    return Outcome(
        float(raw["t"]), float(raw["latency_ms"]), int(raw["code"]), str(raw.get("region") or ""),
        raw.get("order_id"), raw.get("status"), raw.get("site"), tuple(raw.get("passed_over") or ()),
    )  # fmt: skip


@dataclass
class Faults:
    """When faults were injected and cleared, by target (the window the measures start from)."""

    started: dict[str, float] = field(default_factory=dict)
    cleared: dict[str, float] = field(default_factory=dict)

    def start(self, target: str) -> None:
        self.started.setdefault(target, time.time())

    def clear(self, target: str) -> None:
        if target in self.started:
            self.cleared.setdefault(target, time.time())

    def first(self) -> float | None:
        return min(self.started.values(), default=None)


@dataclass
class DrillContext:
    api: httpx.Client  # the control plane, base_url set, no credentials
    tokens: Tokens
    sim: SimAdmin
    outcomes: Outcomes
    database_url: str | None = None  # for the connection-kill action (PostgreSQL only)
    # kills one control-plane process and starts it again; None when driving a --target deployment
    kill_process: Callable[[float], int] | None = None
    faults: Faults = field(default_factory=Faults)

    def get(self, path: str, token: str | None = None, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.api.get(path, headers=headers, params=params)

    def post(self, path: str, body: dict[str, Any], token: str) -> httpx.Response:
        return self.api.post(path, json=body, headers={"Authorization": f"Bearer {token}"})

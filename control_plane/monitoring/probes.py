"""Health probes: one HTTP GET of a target's health URL, judged as a `ProbeResult`.

A probe succeeds on a 2xx answer within the timeout whose JSON body (if any) does not report
`status: down`; anything else (refused, timed out, 5xx, 4xx) is a failure with a short detail
for the transition timeline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

import httpx

from control_plane.monitoring.health import ProbeResult

DOWN_STATUSES = frozenset({"down", "unavailable", "error"})


class Probe(Protocol):
    def check(self, url: str, timeout_s: float) -> ProbeResult:
        """Probe `url` once, within `timeout_s`."""
        ...

    def close(self) -> None: ...


class HttpProbe:
    def __init__(self, clock: Callable[[], datetime], max_connections: int = 32) -> None:
        self._clock = clock
        # keep-alive off: a probe must see a DC that went down, not a pooled socket to it
        self._client = httpx.Client(
            trust_env=False,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=0),
            headers={"User-Agent": "drctl-probe"},
        )

    def check(self, url: str, timeout_s: float) -> ProbeResult:
        at = self._clock()
        started = time.perf_counter()
        try:
            resp = self._client.get(url, timeout=timeout_s)
        except httpx.TimeoutException:
            return ProbeResult(at, False, time.perf_counter() - started, f"no answer within {timeout_s:g} s")
        except httpx.HTTPError as exc:
            return ProbeResult(at, False, time.perf_counter() - started, _transport_detail(exc))
        latency = time.perf_counter() - started
        if not resp.is_success:
            return ProbeResult(at, False, latency, f"HTTP {resp.status_code}")
        status = _reported_status(resp)
        if status in DOWN_STATUSES:
            return ProbeResult(at, False, latency, f"reports status {status!r}")
        return ProbeResult(at, True, latency, f"HTTP {resp.status_code}")

    def close(self) -> None:
        self._client.close()


def _reported_status(resp: httpx.Response) -> str:
    if "json" not in resp.headers.get("content-type", ""):
        return ""
    try:
        body = resp.json()
    except ValueError:
        return ""
    return str(body.get("status", "")).lower() if isinstance(body, dict) else ""


def _transport_detail(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "connection refused" if "refused" in str(exc).lower() else "cannot connect"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "connection dropped"
    return type(exc).__name__

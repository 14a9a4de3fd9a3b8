"""`pg_terminate_backend` on every drctl connection, three times, while 16 clients post orders.

Each request either succeeds or fails cleanly: a 503 problem+json with Retry-After, which the
client retries with the same body (orders are idempotent on channel + external_id). Afterwards no
half-written order: none without lines, no line or route attempt without its order, no stock
reserved but for an order live at that site; and every order is in exactly one DC ledger or held.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import text
from test_failover_under_load_e2e import CLIENTS, reconcile_live, wait_quiet

from chaos.order_stream import OrderFactory
from chaos.sim_process import wait_until

from harness import control_plane, engine_for, prepare_database, start_simulator, write_test_world

# real servers under load but no timing bound: runs beside the other tests, not in the serial e2e phase
pytestmark = pytest.mark.load
MAX_TRIES = 10


class RetryingLoad:
    """16 clients posting each body until it gets a final answer (503 and no answer are retried)."""

    def __init__(self, base_url: str, token: str, bodies: list[dict[str, Any]], max_s: float = 180) -> None:
        self.final: list[int] = []
        self.refused: list[httpx.Response] = []  # every 5xx seen on the way
        self.unanswered = 0
        self._bodies = iter(bodies)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._deadline = time.monotonic() + max_s
        self._base, self._token = base_url, token
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(CLIENTS)]

    def _post_until_final(self, http: httpx.Client, body: dict[str, Any]) -> int:
        for _ in range(MAX_TRIES):
            try:
                resp = http.post("/v1/orders", json=body)
            except httpx.TransportError:
                with self._lock:
                    self.unanswered += 1
                time.sleep(0.2)
                continue
            if resp.status_code < 500:
                return resp.status_code
            with self._lock:
                self.refused.append(resp)
            time.sleep(float(resp.headers.get("retry-after", "1")) / 4)  # bounded by MAX_TRIES
        return -1

    def _client(self) -> None:
        headers = {"Authorization": f"Bearer {self._token}"}
        with httpx.Client(base_url=self._base, headers=headers, timeout=30, trust_env=False) as http:
            while not self._stop.is_set() and time.monotonic() < self._deadline:
                with self._lock:
                    body = next(self._bodies, None)
                if body is None:
                    return
                code = self._post_until_final(http, body)
                with self._lock:
                    self.final.append(code)

    def done(self) -> int:
        with self._lock:
            return len(self.final)

    def __enter__(self) -> RetryingLoad:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(90)
        assert not any(t.is_alive() for t in self._threads), "a load client did not stop in 90 s"


def terminate_drctl_connections(url: str) -> int:
    """Every connection to the test's database but this one: the control plane's pool and lock holder."""
    dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(row[0]) if row else 0


HALF_WRITTEN = {
    "orders without lines": "SELECT count(*) FROM orders o WHERE NOT EXISTS "
    "(SELECT 1 FROM order_lines l WHERE l.order_id = o.id)",
    "lines without an order": "SELECT count(*) FROM order_lines l WHERE NOT EXISTS "
    "(SELECT 1 FROM orders o WHERE o.id = l.order_id)",
    "route attempts without an order": "SELECT count(*) FROM route_attempts a WHERE NOT EXISTS "
    "(SELECT 1 FROM orders o WHERE o.id = a.order_id)",
    # nothing ships in this test: what is reserved at a site is exactly what its live orders hold
    "stock reserved but for no live order": """
        SELECT count(*) FROM stock s WHERE s.reserved <> COALESCE((
            SELECT sum(l.qty) FROM order_lines l JOIN orders o ON o.id = l.order_id
            WHERE o.site = s.site AND l.sku = s.sku AND o.status IN ('routed', 'accepted')), 0)""",
}


@contextmanager
def dropping(url: str, times: int, every_s: float) -> Iterator[list[int]]:
    killed: list[int] = []
    stop = threading.Event()

    def drop() -> None:
        for _ in range(times):
            if stop.wait(every_s):
                return
            killed.append(terminate_drctl_connections(url))

    t = threading.Thread(target=drop, daemon=True)
    t.start()
    try:
        yield killed
    finally:
        t.join(every_s * times + 30)
        stop.set()


def test_dropped_connections_fail_requests_cleanly_and_write_nothing_by_halves(
    pg_url: str, tmp_path: Path
) -> None:
    world, path = write_test_world(tmp_path / "world.yaml")
    issued = prepare_database(pg_url, world)
    factory = OrderFactory(world, seed=31)
    bodies = [factory.order() for _ in range(2500)]
    with start_simulator(path) as sim, control_plane(pg_url, tmp_path, workers=2) as cp:
        with RetryingLoad(cp.base_url, issued["ingest"], bodies) as load:
            assert wait_until(lambda: load.done() >= 100, 60, 0.05), "the load never got going"
            with dropping(pg_url, times=3, every_s=1.0) as killed:
                pass
            started = load.done()
            assert wait_until(lambda: load.done() >= started + 120, 90, 0.05), "intake did not come back"
        assert len(killed) == 3 and all(n > 0 for n in killed), killed
        assert load.final and set(load.final) <= {201, 202, 200}, sorted(set(load.final))
        for resp in load.refused:
            assert resp.status_code == 503, (resp.status_code, resp.text[:300])
            assert resp.headers["content-type"].startswith("application/problem+json")
            assert int(resp.headers["retry-after"]) >= 1
        assert "unhandled error" not in cp.logs()
        wait_quiet(pg_url)
        engine = engine_for(pg_url)
        with engine.connect() as c:
            broken = {what: int(c.scalar(text(sql)) or 0) for what, sql in HALF_WRITTEN.items()}
        engine.dispose()
        assert broken == dict.fromkeys(HALF_WRITTEN, 0), broken
        statuses = reconcile_live(pg_url, sim, world, ignore_victim=False)
        assert sum(statuses.values()) == len(load.final)  # one order per body, retried or not

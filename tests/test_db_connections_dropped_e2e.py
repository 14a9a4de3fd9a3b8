"""`pg_terminate_backend` on every drctl connection, three times, while 16 clients post orders.

Each request either succeeds or fails cleanly: a 503 problem+json with Retry-After, which the
client retries with the same body (orders are idempotent on channel + external_id). Afterwards no
half-written order: none without lines, no line or route attempt without its order, no stock
reserved but for an order live at that site; and every order is in exactly one DC ledger or held.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from test_failover_under_load_e2e import Load, reconcile_live, wait_quiet

from chaos.order_stream import OrderFactory
from chaos.sim_process import wait_until

from harness import control_plane, engine_for, prepare_database, start_simulator, write_test_world

# real servers under load but no timing bound: runs beside the other tests, not in the serial e2e phase
pytestmark = pytest.mark.load
MAX_TRIES = 10


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
        with Load(cp.base_url, issued["ingest"], bodies, tries=MAX_TRIES) as load:
            assert wait_until(lambda: load.posted() >= 100, 60, 0.05), "the load never got going"
            with dropping(pg_url, times=3, every_s=1.0) as killed:
                pass
            started = load.posted()
            assert wait_until(lambda: load.posted() >= started + 120, 90, 0.05), "intake did not come back"
        assert len(killed) == 3 and all(n > 0 for n in killed), killed
        final = [r.status_code for r in load.answers]
        assert load.gave_up == 0, load.gave_up
        assert final and set(final) <= {201, 202, 200}, sorted(set(final))
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
        assert sum(statuses.values()) == len(final)  # one order per body, retried or not

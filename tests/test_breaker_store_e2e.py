"""The shared breaker store (Redis) is SIGKILLed while 16 clients post orders to two workers.

Intake must keep working (no 5xx), `drctl_breaker_store_up` must say 0 and a log line why; when
Redis comes back the metric says 1 again. Afterwards every order is in exactly one DC ledger or held.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_failover_under_load_e2e import Load, reconcile_live, wait_quiet

from chaos.order_stream import OrderFactory
from chaos.sim_process import wait_until

from harness import ControlPlane, control_plane, prepare_database, start_simulator, write_test_world
from servers import redis_server

# real servers under load but no timing bound: runs beside the other tests, not in the serial e2e phase
pytestmark = pytest.mark.load


def store_up(cp: ControlPlane) -> float | None:
    try:
        text = httpx.get(f"{cp.base_url}/metrics", timeout=5, trust_env=False).text
    except httpx.HTTPError:
        return None
    for family in text_string_to_metric_families(text):
        if family.name == "drctl_breaker_store_up":
            return float(family.samples[0].value)
    return None


def test_intake_keeps_working_on_per_process_breakers_while_redis_is_dead(
    pg_url: str, tmp_path: Path
) -> None:
    world, path = write_test_world(tmp_path / "world.yaml")
    issued = prepare_database(pg_url, world)
    factory = OrderFactory(world, seed=21)
    bodies = [factory.order() for _ in range(4000)]
    with redis_server(tmp_path) as redis, start_simulator(path) as sim:
        env = {"DRCTL_REDIS_URL": redis.url, "DRCTL_REDIS_TIMEOUT_S": "0.2"}
        with control_plane(pg_url, tmp_path, env, workers=2) as cp:
            assert store_up(cp) == 1.0
            with Load(cp.base_url, issued["ingest"], bodies) as load:
                assert wait_until(lambda: load.posted() >= 150, 60, 0.05), "the load never got going"
                redis.kill()
                killed_at = load.posted()
                assert wait_until(lambda: store_up(cp) == 0.0, 15, 0.1), "drctl_breaker_store_up never said 0"
                assert wait_until(lambda: load.posted() >= killed_at + 300, 60, 0.05), "intake stalled"
                redis.start()
                assert wait_until(lambda: store_up(cp) == 1.0, 15, 0.1), "the store never came back up"
                back_at = load.posted()
                assert wait_until(lambda: load.posted() >= back_at + 150, 60, 0.05), "intake stalled after"
            codes = [r.status_code for r in load.answers]
            assert codes and all(c in (201, 202) for c in codes), sorted(set(codes))
            logs = cp.logs()
            assert "breaker store (Redis) unreachable" in logs
            assert "breaker store (Redis) answers again" in logs
            wait_quiet(pg_url)
            statuses = reconcile_live(pg_url, sim, world, ignore_victim=False)
            assert sum(statuses.values()) == len(codes)

"""Probes, stored health, impairment and metrics end to end: real DCs, a control plane process."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from chaos.sim_process import SimProcess, wait_until
from control_plane.domain import World

from harness import ControlPlane, control_plane, prepare_database, start_simulator, write_test_world

pytestmark = pytest.mark.e2e

INTERVAL_S = 1.0
FAILURES = 3
SUCCESSES = 2
PROBES = {
    "DRCTL_PROBE_INTERVAL_S": str(INTERVAL_S),
    "DRCTL_PROBE_TIMEOUT_S": "0.9",
    "DRCTL_PROBE_FAILURE_THRESHOLD": str(FAILURES),
    "DRCTL_PROBE_SUCCESS_THRESHOLD": str(SUCCESSES),
    "DRCTL_LEADER_POLL_S": "0.25",
    "DRCTL_ALERT_EVAL_INTERVAL_S": "0.5",
}
HONAM = {"region": "honam", "postal_code": "61000", "lat": 35.16, "lon": 126.85}
GANGNAM = {"region": "capital", "postal_code": "06236", "lat": 37.52, "lon": 127.05}


@contextlib.contextmanager
def monitored(
    url: str, tmp_path: Path, role: str, first_healthy: str
) -> Iterator[tuple[World, SimProcess, ControlPlane, httpx.Client]]:
    """The sample world's DCs, a control plane probing them fast, and a client once `first_healthy` is."""
    world, path = write_test_world(tmp_path / "world.yaml")
    tokens = prepare_database(url, world)
    with start_simulator(path) as sim, control_plane(url, tmp_path, PROBES) as cp:
        c = cp.client(tokens[role])
        wait_health(c, first_healthy, "healthy", 10)
        yield world, sim, cp, c


def order(world: World, n: int, ship_to: dict[str, Any], sku: str = "KR-0001") -> dict[str, Any]:
    price = next(str(s.unit_price) for s in world.catalog if s.sku == sku)
    return {
        "channel": "web",
        "external_id": f"mon-{ship_to['region']}-{n}-{time.time_ns()}",
        "customer": {"id": f"c-{n}", "name": "Kim", "email": f"c{n}@example.com"},
        "ship_to": ship_to,
        "lines": [{"sku": sku, "qty": 1, "unit_price": price}],
    }


def health(c: httpx.Client, target: str) -> str:
    resp = c.get(f"/v1/health-checks/{target}")
    return str(resp.json()["health"]) if resp.status_code == 200 else "unknown"


def wait_health(c: httpx.Client, target: str, want: str, timeout_s: float) -> None:
    assert wait_until(lambda: health(c, target) == want, timeout_s, 0.05), (
        f"{target} not {want} within {timeout_s}s: {c.get(f'/v1/health-checks/{target}').json()}"
    )


def transition_at(c: httpx.Client, target: str, to: str, after: datetime) -> datetime:
    transitions = c.get(f"/v1/health-checks/{target}").json()["transitions"]
    times = [
        datetime.fromisoformat(t["at"])
        for t in transitions
        if t["to_health"] == to and datetime.fromisoformat(t["at"]) >= after
    ]
    assert times, f"no stored transition of {target} to {to} after {after}: {transitions}"
    return min(times)


def test_down_dc_is_down_after_interval_times_threshold_and_healthy_after_success_threshold(
    db_url: str, tmp_path: Path
) -> None:
    with monitored(db_url, tmp_path, "viewer", "site:icheon") as (_world, sim, _cp, c):
        # when the DC goes down, it is down after interval x failure threshold (+- one interval)
        fault_at = datetime.now(UTC)
        sim.set_fault("icheon", "down")
        wait_health(c, "site:icheon", "down", INTERVAL_S * FAILURES + 5)
        down_after = (transition_at(c, "site:icheon", "down", fault_at) - fault_at).total_seconds()
        assert INTERVAL_S * (FAILURES - 1) <= down_after <= INTERVAL_S * (FAILURES + 1), down_after

        # and healthy again after the success threshold once it is back
        back_at = datetime.now(UTC)
        sim.clear_fault("icheon")
        wait_health(c, "site:icheon", "healthy", INTERVAL_S * SUCCESSES + 5)
        healthy_after = (transition_at(c, "site:icheon", "healthy", back_at) - back_at).total_seconds()
        assert INTERVAL_S * (SUCCESSES - 1) <= healthy_after <= INTERVAL_S * (SUCCESSES + 1), healthy_after

        # every transition is stored, with its reason; routing sees the health too
        check = c.get("/v1/health-checks/site:icheon").json()
        path_taken = [(t["from_health"], t["to_health"]) for t in reversed(check["transitions"])]
        assert path_taken == [
            ("unknown", "healthy"),
            ("healthy", "degraded"),
            ("degraded", "down"),
            ("down", "healthy"),
        ]
        assert "connection refused" in check["transitions"][1]["reason"]

        # the site's view is the routing cache, refreshed every DRCTL_STATE_REFRESH_S: it may trail the
        # health check by that much (seen once in CI), never by more
        def site_health() -> str:
            return str(c.get("/v1/sites/icheon").json()["health"])

        assert wait_until(lambda: site_health() == "healthy", 5, 0.05), site_health()


def test_cj_down_with_hanjin_up_impairs_only_sites_shipping_with_cj_alone(
    pg_url: str, tmp_path: Path
) -> None:
    with monitored(pg_url, tmp_path, "ingest", "integration:cj-logistics") as (world, sim, _cp, c):
        # given: with every carrier up, Honam goes to Gwangju and Gangnam to the Seoul MFC
        before = [c.post("/v1/orders", json=order(world, i, HONAM)).json() for i in range(5)]
        before += [c.post("/v1/orders", json=order(world, i, GANGNAM)).json() for i in range(5)]
        assert [o["site"] for o in before] == ["gwangju"] * 5 + ["seoul-mfc"] * 5

        # when CJ Logistics goes down while Hanjin stays up
        sim.set_fault("cj-logistics", "down")
        wait_health(c, "integration:cj-logistics", "down", INTERVAL_S * FAILURES + 5)

        def impaired() -> set[str]:
            return {s["code"] for s in c.get("/v1/sites").json() if s["impaired"]}

        assert wait_until(lambda: impaired() == {"gwangju", "seoul-mfc"}, 5), impaired()
        cj = c.get("/v1/integrations/cj-logistics").json()
        assert {i["subject"] for i in cj["impaired_sites"]} == {"gwangju", "seoul-mfc"}
        assert health(c, "integration:hanjin") == "healthy"

        # then orders route around them and are still accepted
        after = [c.post("/v1/orders", json=order(world, 10 + i, HONAM)) for i in range(5)]
        after += [c.post("/v1/orders", json=order(world, 10 + i, GANGNAM)) for i in range(5)]
        assert [r.status_code for r in after] == [201] * 10
        sites = [r.json()["site"] for r in after]
        assert not {"gwangju", "seoul-mfc"} & set(sites), sites

        # and the impairment lifts when CJ is back
        sim.clear_fault("cj-logistics")
        assert wait_until(lambda: impaired() == set(), INTERVAL_S * SUCCESSES + 5), impaired()


def test_breaker_opening_marks_a_site_degraded_while_its_probes_still_pass(
    sqlite_url: str, tmp_path: Path
) -> None:
    with monitored(sqlite_url, tmp_path, "ingest", "site:gwangju") as (world, sim, _cp, c):
        # given: Gwangju answers in 0.7 s: past the 0.5 s order-call timeout, within the 0.9 s probe's
        sim.set_fault("gwangju", "latency", latency_ms=700)
        # when orders to it time out until its breaker opens
        for i in range(8):
            c.post("/v1/orders", json=order(world, i, HONAM))
        # then its health is degraded at once, by the breaker, though every probe passes
        wait_health(c, "site:gwangju", "degraded", 3)
        check = c.get("/v1/health-checks/site:gwangju").json()
        assert check["breaker_open"] is True
        assert check["transitions"][0]["reason"] == "breaker opened"
        assert check["consecutive_failures"] == 0


DESIGN_LABELS = {
    "drctl_orders_received_total": {"channel"},
    "drctl_orders_routed_total": {"site", "reason"},
    "drctl_orders_rerouted_total": {"from_site", "to_site"},
    "drctl_orders_held": set(),
    "drctl_routing_seconds": set(),
    "drctl_dispatch_seconds": {"site"},
    "drctl_breaker_state": {"breaker"},
    "drctl_site_health": {"site"},
    "drctl_site_accepting": {"site"},
    "drctl_site_load_ratio": {"site"},
    "drctl_integration_health": {"integration"},
    "drctl_notices_total": {"channel", "status"},
    "drctl_incidents_open": set(),
    "drctl_alerts_firing": {"alert"},
    "drctl_probe_seconds": {"target"},
}


def test_every_design_metric_is_exported_with_its_labels_after_a_short_run(
    sqlite_url: str, tmp_path: Path
) -> None:
    with monitored(sqlite_url, tmp_path, "ingest", "site:gwangju") as (world, sim, cp, c):
        # a short run: orders, one of them rerouted away from a DC that just failed
        sim.set_fault("gwangju", "error_rate", p=1.0)
        responses = [c.post("/v1/orders", json=order(world, i, HONAM)) for i in range(3)]
        assert {r.status_code for r in responses} == {201}
        sim.clear_fault("gwangju")

        def families() -> dict[str, list[dict[str, str]]]:
            text = httpx.get(f"{cp.base_url}/metrics", trust_env=False).text
            return {f.name: [s.labels for s in f.samples] for f in text_string_to_metric_families(text)}

        # gauges are refreshed every few seconds: wait for the slowest to appear
        assert wait_until(lambda: "drctl_integration_health" in str(families()), 10)
        found = families()
        for name, labels in DESIGN_LABELS.items():
            family = name.removesuffix("_total")  # the parser names counters without it
            assert family in found, f"{name} missing from /metrics"
            assert found[family], f"{name} has no samples"
            assert any(labels <= set(s) - {"le"} for s in found[family]), (name, found[family][:3])
        rerouted = [s for s in found["drctl_orders_rerouted"] if s.get("from_site") == "gwangju"]
        assert rerouted, found["drctl_orders_rerouted"]

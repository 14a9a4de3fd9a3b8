"""The loop an SRE runs: Prometheus scrapes drctl and evaluates alerts.yml, Alertmanager calls drctl back.

Real servers (Debian `prometheus` and `prometheus-alertmanager`) on loopback ports with short
intervals; the rules are deploy/prometheus/alerts.yml with only SiteDown's `for` shortened. The
built-in engine is off, so the incident can only come from Alertmanager's webhook.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness import ROOT, control_plane, prepare_database, start_simulator, write_test_world
from promstack import alertmanager, fast_rules, prometheus

pytestmark = pytest.mark.e2e

SETTINGS = {
    "DRCTL_PROBE_INTERVAL_S": "0.5",
    "DRCTL_PROBE_TIMEOUT_S": "0.4",
    "DRCTL_PROBE_FAILURE_THRESHOLD": "2",
    "DRCTL_PROBE_SUCCESS_THRESHOLD": "2",
    "DRCTL_LEADER_POLL_S": "0.25",
    "DRCTL_ALERT_ENGINE": "false",
}


def test_a_down_dc_ends_as_an_open_incident_and_its_recovery_resolves_it(pg_url: str, tmp_path: Path) -> None:
    world, path = write_test_world(tmp_path / "world.yaml")
    tokens = prepare_database(pg_url, world)
    rules = fast_rules(ROOT / "deploy/prometheus/alerts.yml", tmp_path / "alerts.yml", {"SiteDown": 1})
    with start_simulator(path) as sim, control_plane(pg_url, tmp_path, SETTINGS) as cp:
        viewer = cp.client(tokens["viewer"])
        hook = f"{cp.base_url}/v1/hooks/alertmanager"
        with (
            alertmanager(hook, tokens["hook"], tmp_path) as am,
            prometheus([cp.base_url], rules, am.url, tmp_path) as prom,
        ):
            prom.wait_for(
                lambda: _value(prom.query('max(drctl_site_health{site="icheon"})')) == 1.0, 30, "a scrape"
            )

            def icheon_incident() -> dict[str, Any] | None:
                found = [i for i in viewer.get("/v1/incidents").json() if i["subject"] == "icheon"]
                return viewer.get(f"/v1/incidents/{found[0]['id']}").json() if found else None

            # when Icheon goes down: Prometheus fires SiteDown, Alertmanager posts it, drctl opens an incident
            sim.set_fault("icheon", "down")
            incident = prom.wait_for(icheon_incident, 40, "an incident for icheon")
            assert (incident["kind"], incident["trigger"], incident["status"]) == (
                "site_outage",
                "alert",
                "open",
            )
            firing = [e for e in incident["timeline"] if e["kind"] == "alert_firing"]
            assert len(firing) == 1 and firing[0]["data"]["source"] == "alertmanager", incident["timeline"]
            assert firing[0]["data"]["labels"]["alertname"] == "SiteDown"

            # when it recovers: the resolve notification resolves the incident
            sim.clear_fault("icheon")
            resolved = prom.wait_for(
                lambda: (i := icheon_incident()) is not None and i["status"] == "resolved" and i,
                40,
                "the resolve",
            )
            kinds = [e["kind"] for e in resolved["timeline"] if not e["kind"].startswith("runbook")]
            assert kinds == ["opened", "alert_firing", "alert_resolved", "resolved"], kinds
            assert len(viewer.get("/v1/incidents").json()) == 1  # repeats from Alertmanager added nothing
            # the webhook started the DC-outage runbook once; the DC came back before any approval
            runs = prom.wait_for(
                lambda: (
                    (r := viewer.get("/v1/runbook-executions").json()) and r[0]["status"] == "aborted" and r
                ),
                10,
                "the waiting runbook aborted",
            )
            assert [(r["runbook"], r["started_by"]) for r in runs] == [("dc-outage", "alert:SiteDown")], runs
        audit = cp.client(tokens["admin"]).get("/v1/audit", params={"action": "alertmanager.notification"})
        assert len(audit.json()) == 2


def _value(result: list[dict[str, Any]]) -> float | None:
    return float(result[0]["value"][1]) if result else None

"""tests/promstack.py runs a real Prometheus -> Alertmanager -> webhook loop; the example configs are sound.

The loop here runs without drctl: a stand-in serves `drctl_site_health` and a stand-in hook records
what Alertmanager posts, so a failure points at the harness or the configs, not at the control plane.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from chaos.ports import free_port

import promstack
from promstack import alertmanager, amtool_bin, fast_rules, prometheus, run_alertmanager, webhook_config

REPO = Path(__file__).resolve().parents[1]
ALERTS = REPO / "deploy/prometheus/alerts.yml"
EXAMPLE_AM = REPO / "deploy/alertmanager/alertmanager.yml"
SAMPLE_WORLD = REPO / "examples/kr-retail/world.yaml"
TOKEN = "drctl_promstack-test-token"


def alert_rules(path: Path) -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


def run_amtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [amtool_bin(), *map(str, args)], capture_output=True, text=True, timeout=60, cwd=REPO, check=False
    )


# --- stand-ins for drctl ----------------------------------------------------------------------------


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Keep request lines out of the test output."""


@dataclass
class SiteHealthExporter:
    """Serve `drctl_site_health{site="icheon"}` on /metrics, as drctl would; `value` can be switched."""

    value: float = 0.0
    port: int = field(default_factory=free_port)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        exporter = self

        class Handler(_Quiet):
            def do_GET(self) -> None:
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                body = (
                    "# HELP drctl_site_health 1 healthy, 0.5 degraded, 0 down, -1 unknown\n"
                    "# TYPE drctl_site_health gauge\n"
                    f'drctl_site_health{{site="icheon"}} {exporter.value}\n'
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


@dataclass
class Delivery:
    at: float
    authorization: str | None
    body: dict[str, Any]


@dataclass
class HookRecorder:
    """Record every webhook POST (arrival time, Authorization header, JSON body); answer 200."""

    port: int = field(default_factory=free_port)
    deliveries: list[Delivery] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/hooks/alertmanager"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        recorder = self

        class Handler(_Quiet):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                recorder.deliveries.append(
                    Delivery(time.monotonic(), self.headers.get("Authorization"), json.loads(raw))
                )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler

    def alerts(self, status: str) -> list[tuple[Delivery, dict[str, Any]]]:
        return [(d, a) for d in list(self.deliveries) for a in d.body["alerts"] if a["status"] == status]


@contextlib.contextmanager
def serving(port: int, handler: type[BaseHTTPRequestHandler]) -> Iterator[None]:
    """Serve `handler` on 127.0.0.1:`port` in a thread for the duration of the block."""
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def labels_of(pairs: list[tuple[Delivery, dict[str, Any]]]) -> list[dict[str, str]]:
    return [a["labels"] for _, a in pairs]


# --- the harness itself ------------------------------------------------------------------------------


def test_a_missing_binary_skips_loudly_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(promstack.shutil, "which", lambda _: None)

    monkeypatch.setattr(promstack, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception, match=r"SKIPPED LOUDLY.*prometheus-alertmanager"):
        promstack.alertmanager_bin()
    monkeypatch.setattr(promstack, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match=r"CI=true.*NOT run"):
        promstack.prometheus_bin()


def test_the_harness_refuses_targets_off_loopback(tmp_path: Path) -> None:
    off_loopback = re.escape("only 127.0.0.1")
    with pytest.raises(ValueError, match=off_loopback):
        webhook_config("http://hooks.example.com/v1/hooks/alertmanager", TOKEN)
    with pytest.raises(ValueError, match=off_loopback), prometheus(["0.0.0.0:8000"], ALERTS, None, tmp_path):
        pass


# --- fast_rules -------------------------------------------------------------------------------------


def test_fast_rules_changes_only_the_for_durations(tmp_path: Path) -> None:
    fast = alert_rules(fast_rules(ALERTS, tmp_path / "alerts.yml", {"SiteDown": 1, "BreakerOpen": 0.5}))
    original = alert_rules(ALERTS)

    assert fast["SiteDown"]["for"] == "1s"
    assert fast["BreakerOpen"]["for"] == "500ms"
    for name, rule in original.items():
        assert fast[name]["expr"] == rule["expr"], name
        assert {k: v for k, v in fast[name].items() if k != "for"} == {
            k: v for k, v in rule.items() if k != "for"
        }, name
        if name not in ("SiteDown", "BreakerOpen"):
            assert fast[name]["for"] == rule["for"], name


def test_fast_rules_with_one_value_shortens_every_alert(tmp_path: Path) -> None:
    fast = alert_rules(fast_rules(ALERTS, tmp_path / "alerts.yml", 2))

    assert {r["for"] for r in fast.values()} == {"2s"}


def test_fast_rules_refuses_an_alert_name_that_is_not_in_the_file(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="SiteDwn"):
        fast_rules(ALERTS, tmp_path / "alerts.yml", {"SiteDwn": 1})


# --- the example Alertmanager config -------------------------------------------------------------


def test_example_alertmanager_config_passes_amtool_check() -> None:
    result = run_amtool("check-config", EXAMPLE_AM)
    assert result.returncode == 0, result.stdout + result.stderr


def test_harness_alertmanager_config_passes_amtool_check(tmp_path: Path) -> None:
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(webhook_config("http://127.0.0.1:8000/hook", TOKEN)), encoding="utf-8")

    result = run_amtool("check-config", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_example_routes_every_drctl_alert_to_the_drctl_hook_and_nothing_else() -> None:
    for name in alert_rules(ALERTS):
        result = run_amtool("config", "routes", "test", f"--config.file={EXAMPLE_AM}", f"alertname={name}")
        assert result.stdout.split() == ["drctl"], (name, result.stdout + result.stderr)
    other = run_amtool("config", "routes", "test", f"--config.file={EXAMPLE_AM}", "alertname=NodeDown")
    assert other.stdout.split() == ["default"], other.stdout + other.stderr


def test_example_has_an_inhibit_rule_for_every_sample_site() -> None:
    sites = {s["code"] for s in yaml.safe_load(SAMPLE_WORLD.read_text(encoding="utf-8"))["sites"]}
    rules = yaml.safe_load(EXAMPLE_AM.read_text(encoding="utf-8"))["inhibit_rules"]
    pairs = {(tuple(r["source_matchers"]), tuple(r["target_matchers"])) for r in rules}

    assert pairs == {
        (('alertname="SiteDown"', f'site="{s}"'), ('alertname="BreakerOpen"', f'breaker="{s}"'))
        for s in sites
    }


@pytest.mark.e2e
def test_example_site_down_inhibits_only_the_breaker_of_the_same_site(tmp_path: Path) -> None:
    # Given the example, pointed at a recording hook with its token in a file (timings shortened)
    hook = HookRecorder()
    token_file = tmp_path / "ingest-token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    config = yaml.safe_load(EXAMPLE_AM.read_text(encoding="utf-8"))
    route = config["route"]["routes"][0]
    route.update(group_wait="1s", group_interval="1s")
    webhook = config["receivers"][1]["webhook_configs"][0]
    webhook["url"] = hook.url
    webhook["http_config"]["authorization"]["credentials_file"] = str(token_file)
    config_file = tmp_path / "alertmanager.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    with serving(hook.port, hook.handler()), run_alertmanager(config_file, tmp_path) as am:
        # When icheon is down and the breakers of icheon and busan are open
        am.post_alerts(
            [
                {"labels": {"alertname": "SiteDown", "site": "icheon", "severity": "critical"}},
                {"labels": {"alertname": "BreakerOpen", "breaker": "icheon", "severity": "warning"}},
                {"labels": {"alertname": "BreakerOpen", "breaker": "busan", "severity": "warning"}},
            ]
        )
        am.wait_for(
            lambda: len(hook.alerts("firing")) >= 2, 15, "SiteDown and busan's BreakerOpen at the hook"
        )
        time.sleep(1.5)  # one more group_interval: an inhibited alert would have been sent by now

        # Then icheon's breaker is inhibited by SiteDown, busan's is not, and the hook saw the token
        inhibited = {
            a["labels"].get("breaker"): bool(a["status"]["inhibitedBy"])
            for a in am.alerts()
            if a["labels"]["alertname"] == "BreakerOpen"
        }
        assert inhibited == {"icheon": True, "busan": False}
        sent = labels_of(hook.alerts("firing"))
        assert sorted((a["alertname"], a.get("site") or a.get("breaker")) for a in sent) == [
            ("BreakerOpen", "busan"),
            ("SiteDown", "icheon"),
        ]
        assert {d.authorization for d in hook.deliveries} == {f"Bearer {TOKEN}"}


# --- the whole loop ---------------------------------------------------------------------------------


@pytest.mark.e2e
def test_prometheus_fires_site_down_to_the_hook_and_resolves_it(tmp_path: Path) -> None:
    # Given a DC reported down, Prometheus on the real rules (SiteDown after 1s) and Alertmanager
    exporter = SiteHealthExporter(value=0)
    hook = HookRecorder()
    rules = fast_rules(ALERTS, tmp_path / "alerts.yml", {"SiteDown": 1})
    with (
        serving(exporter.port, exporter.handler()),
        serving(hook.port, hook.handler()),
        alertmanager(hook.url, TOKEN, tmp_path) as am,
        prometheus([exporter.target], rules, am.url, tmp_path) as prom,
    ):
        started = time.monotonic()

        # When the condition holds: a firing SiteDown reaches the hook with the bearer token
        firing = prom.wait_for(lambda: hook.alerts("firing"), 20, "a firing alert at the hook")
        fired_at = firing[0][0].at
        assert labels_of(firing) == [{"alertname": "SiteDown", "site": "icheon", "severity": "critical"}]
        assert firing[0][1]["annotations"]["summary"] == "DC icheon is down"
        assert firing[0][0].authorization == f"Bearer {TOKEN}"
        assert prom.targets()[0]["health"] == "up"

        # When the DC is healthy again: the hook gets the same alert, resolved
        exporter.value = 1
        recovered = time.monotonic()
        resolved = prom.wait_for(lambda: hook.alerts("resolved"), 20, "a resolved alert at the hook")
        assert labels_of(resolved) == labels_of(firing)
        assert resolved[0][1]["fingerprint"] == firing[0][1]["fingerprint"]
        assert resolved[0][0].authorization == f"Bearer {TOKEN}"
        am.wait_for(lambda: not am.alerts(active="true"), 5, "Alertmanager to drop the alert")

        # the token is in Alertmanager's config, never in a log line
        assert TOKEN not in am.logs() and TOKEN not in prom.logs()

    fire_s, resolve_s = fired_at - started, resolved[0][0].at - recovered
    print(
        f"\npromstack loop: firing at the hook {fire_s:.1f}s after Prometheus was ready, "
        f"resolved {resolve_s:.1f}s after the metric recovered"
    )
    print("webhook body (firing):", json.dumps(firing[0][0].body, indent=1))
    assert fire_s < 15 and resolve_s < 15

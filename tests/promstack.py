"""A real Prometheus and Alertmanager for tests: the loop an SRE runs, on loopback ports, bounded in time.

Plain context managers, not fixtures, so an end-to-end test can point them at whatever it runs
(drctl, or a stand-in). The binaries come from the Debian packages `prometheus` and
`prometheus-alertmanager`; without them a test is skipped loudly on a workstation and fails under
CI=true, so CI can never pass without running the loop.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from chaos.ports import free_port

from conftest import IN_CI

T = TypeVar("T")
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
LOG_TAIL = 3000
# Go's HTTP client honours these; loopback is exempt, but a stray proxy must never see a test's token.
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def binary(name: str, package: str, *candidates: str) -> str:
    """Return the path of a Prometheus-stack binary, or skip loudly (fail under CI) without it."""
    for candidate in (*candidates, name):
        path = shutil.which(candidate)
        if path is not None:
            return path
    msg = f"{name} is not installed (Debian: `apt-get install -y {package}`)"
    if IN_CI:
        pytest.fail(f"CI=true: {msg}; the Prometheus/Alertmanager loop was NOT run", pytrace=False)
    pytest.skip(f"SKIPPED LOUDLY, the Prometheus/Alertmanager loop was NOT run: {msg}")


def prometheus_bin() -> str:
    return binary("prometheus", "prometheus", "/usr/bin/prometheus")


def alertmanager_bin() -> str:
    # Debian renames the upstream `alertmanager` binary
    return binary("alertmanager", "prometheus-alertmanager", "/usr/bin/prometheus-alertmanager")


def amtool_bin() -> str:
    return binary("amtool", "prometheus-alertmanager", "/usr/bin/amtool")


# --- rules ---------------------------------------------------------------------------------------


class _BlockStrings(yaml.SafeDumper):
    """Dump multi-line strings (PromQL) as `|` blocks so the copy stays readable in a failure."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockStrings.add_representer(str, _str)


def prom_duration(seconds: float) -> str:
    """Format seconds as a Prometheus duration (`2s`, `1500ms`)."""
    ms = round(seconds * 1000)
    if ms < 0:
        raise ValueError(f"a duration cannot be negative: {seconds}")
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def fast_rules(src: Path, dst: Path, for_s: dict[str, float] | float) -> Path:
    """Copy an alert rules file with shorter `for:` durations; everything else stays as it was.

    `for_s` maps alert names to seconds (others keep theirs), or is one value for every alert.
    """
    doc = yaml.safe_load(src.read_text(encoding="utf-8"))
    alerts = [r for g in doc["groups"] for r in g["rules"] if "alert" in r]
    if isinstance(for_s, dict):
        unknown = set(for_s) - {r["alert"] for r in alerts}
        if unknown:
            # a typo would otherwise leave the 1m default and the test would time out obscurely
            raise KeyError(f"no such alerts in {src}: {sorted(unknown)}")
    for rule in alerts:
        seconds = for_s.get(rule["alert"]) if isinstance(for_s, dict) else for_s
        if seconds is not None:
            rule["for"] = prom_duration(seconds)
    dst.write_text(yaml.dump(doc, Dumper=_BlockStrings, sort_keys=False, width=1000), encoding="utf-8")
    return dst


# --- processes -----------------------------------------------------------------------------------


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-LOG_TAIL:] if path.exists() else "(no log)"


def _loopback_hostport(url_or_hostport: str) -> str:
    """Return `host:port` of a loopback URL or address; refuse anything off this machine."""
    parts = urlsplit(url_or_hostport if "//" in url_or_hostport else f"//{url_or_hostport}")
    if parts.hostname != "127.0.0.1" or parts.port is None:
        raise ValueError(f"only 127.0.0.1:<port> targets are allowed here, not {url_or_hostport!r}")
    return f"{parts.hostname}:{parts.port}"


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=1, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def _process(name: str, argv: list[str], url: str, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server until the block ends: wait for `/-/ready`, then terminate (kill if it hangs)."""
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=log_path.parent)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _ready(url):
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{_tail(log_path)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready after {READY_TIMEOUT_S:.0f}s:\n{_tail(log_path)}")
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)


@dataclass
class _Server:
    url: str
    log_path: Path
    proc: subprocess.Popen[bytes]

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, **params: str) -> Any:
        response = httpx.get(f"{self.url}{path}", params=params, timeout=5, trust_env=False)
        response.raise_for_status()
        return response.json()

    def wait_for(self, predicate: Callable[[], T], timeout_s: float, what: str = "the condition") -> T:
        """Poll `predicate` until it returns something truthy, and return that; raise with the log tail."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.url} exited while waiting for {what}:\n{_tail(self.log_path)}")
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"no {what} after {timeout_s}s; log of {self.url}:\n{_tail(self.log_path)}"
                )
            time.sleep(0.1)


# --- Alertmanager --------------------------------------------------------------------------------


@dataclass
class Alertmanager(_Server):
    def alerts(self, **params: str) -> list[dict[str, Any]]:
        """Alerts it holds (GET /api/v2/alerts), with status.state and status.inhibitedBy."""
        return list(self.get("/api/v2/alerts", **params))

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        """Push alerts as Prometheus would (POST /api/v2/alerts), to test routing without rules."""
        response = httpx.post(f"{self.url}/api/v2/alerts", json=alerts, timeout=5, trust_env=False)
        response.raise_for_status()


def webhook_config(
    webhook_url: str,
    bearer_token: str,
    group_wait: str = "1s",
    group_interval: str = "1s",
    repeat_interval: str = "1h",
) -> dict[str, Any]:
    """Build an Alertmanager config: every alert to one webhook, resolved too, with a bearer token."""
    _loopback_hostport(webhook_url)
    return {
        "route": {
            "receiver": "hook",
            # `...` groups by every label: one notification per alert, so a test sees each on its own
            "group_by": ["..."],
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": repeat_interval,
        },
        "receivers": [
            {
                "name": "hook",
                "webhook_configs": [
                    {
                        "url": webhook_url,
                        "send_resolved": True,
                        "http_config": {"authorization": {"type": "Bearer", "credentials": bearer_token}},
                    }
                ],
            }
        ],
    }


@contextlib.contextmanager
def run_alertmanager(config_file: Path, tmp: Path) -> Iterator[Alertmanager]:
    """Run Alertmanager on a free loopback port with a given config file."""
    exe = alertmanager_bin()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        exe,
        f"--config.file={config_file}",
        f"--storage.path={tmp / f'alertmanager-{port}-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        # else externalURL in every webhook body names this host's hostname
        f"--web.external-url={url}",
        # empty turns gossip off; otherwise it binds 0.0.0.0:9094 and two test runs collide
        "--cluster.listen-address=",
    ]
    log_path = tmp / f"alertmanager-{port}.log"
    with _process("alertmanager", argv, url, log_path) as proc:
        yield Alertmanager(url, log_path, proc)


@contextlib.contextmanager
def alertmanager(
    webhook_url: str,
    bearer_token: str,
    tmp: Path,
    group_wait: str = "1s",
    group_interval: str = "1s",
    repeat_interval: str = "1h",
) -> Iterator[Alertmanager]:
    """Run Alertmanager routing every alert to `webhook_url` with `Authorization: Bearer <token>`."""
    config = webhook_config(webhook_url, bearer_token, group_wait, group_interval, repeat_interval)
    path = tmp / f"alertmanager-{time.time_ns()}.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    with run_alertmanager(path, tmp) as am:
        yield am


# --- Prometheus ----------------------------------------------------------------------------------


@dataclass
class Prometheus(_Server):
    def query(self, expr: str) -> list[dict[str, Any]]:
        """Evaluate an instant query now; return its result vector."""
        return list(self.get("/api/v1/query", query=expr)["data"]["result"])

    def alerts(self) -> list[dict[str, Any]]:
        """Pending and firing alerts (GET /api/v1/alerts)."""
        return list(self.get("/api/v1/alerts")["data"]["alerts"])

    def targets(self) -> list[dict[str, Any]]:
        """Active scrape targets with their health and last error."""
        return list(self.get("/api/v1/targets")["data"]["activeTargets"])


@contextlib.contextmanager
def prometheus(
    scrape_targets: list[str],
    rules: Path,
    alertmanager_url: str | None,
    tmp: Path,
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
    resend_delay: str = "1s",
) -> Iterator[Prometheus]:
    """Run Prometheus scraping `/metrics` of each `127.0.0.1:port` target and evaluating `rules`."""
    exe = prometheus_bin()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config: dict[str, Any] = {
        # the scrape timeout must not exceed the interval (default 10s): 1s scrapes need it lowered
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": evaluation_interval,
        },
        "rule_files": [str(rules.resolve())],
        "scrape_configs": [
            {
                "job_name": "drctl",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [_loopback_hostport(t) for t in scrape_targets]}],
            }
        ],
    }
    if alertmanager_url is not None:
        config["alerting"] = {
            "alertmanagers": [{"static_configs": [{"targets": [_loopback_hostport(alertmanager_url)]}]}]
        }
    config_file = tmp / f"prometheus-{port}.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    argv = [
        exe,
        f"--config.file={config_file}",
        f"--storage.tsdb.path={tmp / f'prometheus-{port}-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        # else generatorURL in every alert names this host's hostname, not the address it listens on
        f"--web.external-url={url}",
        # A resolution is sent on the next evaluation whatever this is (measured: ~1s with 1m too);
        # it paces re-sends of firing alerts (default 1m), so an Alertmanager that missed one (started
        # late, restarted) learns of it within a second, and their endsAt is 4x this away.
        f"--rules.alert.resend-delay={resend_delay}",
    ]
    log_path = tmp / f"prometheus-{port}.log"
    # Expect the first scrape ~5s after /-/ready: the discovery manager hands targets to the scrape
    # and notify managers at most every 5s, a constant in 2.42 (--scrape.discovery-reload-interval
    # exists but measured no faster).
    with _process("prometheus", argv, url, log_path) as proc:
        yield Prometheus(url, log_path, proc)

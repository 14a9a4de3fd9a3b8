"""`drctl failover|failback|status` against a real control plane and simulator: what reaches the API,
and which exit code an operator gets (DESIGN §6: 0 ok, 1 refused or failed, 2 usage or bad input)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chaos.ports import free_port
from chaos.sim_process import SimProcess

from harness import (
    ControlPlane,
    control_plane,
    prepare_database,
    record_sample_bia,
    start_simulator,
    write_test_world,
)

# real processes, but exit codes and what reaches the API, no timing bound:
# these run beside the other tests, not in the serial end-to-end phase


@dataclass
class Stack:
    cp: ControlPlane
    sim: SimProcess
    tokens: dict[str, str]

    def drctl(
        self, *args: str, role: str = "operator", url: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DRCTL_URL": url or self.cp.base_url, "DRCTL_TOKEN": self.tokens[role]}
        return subprocess.run(
            [sys.executable, "-m", "control_plane", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def site(self, code: str) -> dict[str, Any]:
        with self.cp.client(self.tokens["viewer"], timeout=10) as http:
            resp = http.get(f"/v1/sites/{code}")
            resp.raise_for_status()
            return dict(resp.json())

    def audit(self) -> list[dict[str, Any]]:
        with self.cp.client(self.tokens["admin"], timeout=10) as http:
            resp = http.get("/v1/audit")
            resp.raise_for_status()
            return list(resp.json())


@contextlib.contextmanager
def stack(db_url: str, tmp_path: Path, extra_env: dict[str, str] | None = None) -> Iterator[Stack]:
    world, path = write_test_world(tmp_path / "world.yaml")
    tokens = prepare_database(db_url, world)
    with start_simulator(path) as sim, control_plane(db_url, tmp_path, extra_env) as cp:
        yield Stack(cp, sim, tokens)


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_failback_with_a_ramp_sends_it_and_the_site_ramps(sqlite_url: str, tmp_path: Path) -> None:
    with stack(sqlite_url, tmp_path) as st:
        out = st.drctl("failover", "busan", "--reason", "drill: busan out", "--json")
        assert out.returncode == 0, out.stderr
        assert st.site("busan")["accepting"] is False
        back = st.drctl("failback", "busan", "--reason", "drill over", "--ramp", "600", "--json")
        assert back.returncode == 0, back.stderr
        assert json.loads(back.stdout)["ramp_s"] == 600
        site = st.site("busan")
        # right after a ten-minute ramp starts, the site takes about 10 % of its orders, not all
        assert site["accepting"] is True
        assert site["ramp_weight"] < 0.5, site
        # and without --ramp a failback reopens at once, as before
        assert st.drctl("failover", "gwangju", "--reason", "drill: gwangju out").returncode == 0
        assert st.drctl("failback", "gwangju", "--reason", "drill over").returncode == 0
        assert st.site("gwangju")["ramp_weight"] == 1.0


def test_a_refusal_by_a_safety_rule_exits_1_naming_the_rule_and_its_numbers(
    sqlite_url: str, tmp_path: Path
) -> None:
    with stack(sqlite_url, tmp_path, {"DRCTL_SAFETY_MIN_ACCEPTING_SITES": "5"}) as st:
        done = st.drctl("failover", "icheon", "--reason", "flood at Icheon")
        assert done.returncode == 1, done.stderr
        line = one_line(done.stderr)
        assert "min_accepting_sites" in line
        # the numbers the rule gave: 5 required, 5 before, 4 after
        assert "min_accepting_sites=5" in line and "accepting_after=4" in line, line
        assert "--force" in line  # how to override, for the operator who knows better
        assert st.site("icheon")["accepting"] is True
        assert not [a for a in st.audit() if a["action"].startswith("site.failover")]


def test_a_dry_run_prints_every_option_priced_and_the_one_recommended(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "240")  # a wide terminal: Rich would fold the table at 80
    with stack(sqlite_url, tmp_path) as st:
        record_sample_bia(sqlite_url)
        done = st.drctl("failover", "gwangju", "--reason", "typhoon coming", "--dry-run")
        assert done.returncode == 0, done.stderr
        text = " ".join(done.stdout.split())
        for option in ("default", "backup:daejeon", "backup:busan", "hold"):
            assert option in text, (option, done.stdout)
        assert "revenue at risk/h" in text and "cost 1st hour" in text
        recommended = next(line for line in done.stdout.splitlines() if line.startswith("recommended:"))
        assert "cheapest" in recommended and "KRW" in recommended
        assert st.site("gwangju")["accepting"] is True


def test_usage_and_bad_input_exit_2_and_change_nothing(sqlite_url: str, tmp_path: Path) -> None:
    with stack(sqlite_url, tmp_path) as st:
        # a typo'd option must not become a real failover
        typo = st.drctl("failover", "icheon", "--reason", "flood at Icheon", "--dryrun")
        assert typo.returncode == 2, typo.stderr
        assert "--dryrun" in typo.stderr
        # an unknown site (404) and a reason the API refuses (422): one line each
        unknown = st.drctl("failover", "atlantis", "--reason", "sunk again")
        assert unknown.returncode == 2, unknown.stderr
        assert "404" in one_line(unknown.stderr) and "atlantis" in unknown.stderr
        short = st.drctl("failover", "icheon", "--reason", "x")
        assert short.returncode == 2, short.stderr
        assert "422" in one_line(short.stderr) and "reason" in short.stderr
        # a viewer may look but not act (403), and a bad token is turned away (401): bad input too
        assert st.drctl("failover", "icheon", "--reason", "not mine", role="viewer").returncode == 2
        assert st.site("icheon")["accepting"] is True
        assert not [a for a in st.audit() if a["action"].startswith("site.")]


def test_a_control_plane_that_cannot_be_reached_exits_1_saying_nothing_was_sent(
    sqlite_url: str, tmp_path: Path
) -> None:
    env = {**os.environ, "DRCTL_URL": f"http://127.0.0.1:{free_port()}", "DRCTL_TOKEN": "drctl_nope"}
    done = subprocess.run(
        [sys.executable, "-m", "control_plane", "failover", "icheon", "--reason", "flood at Icheon"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    line = one_line(done.stderr)
    assert "cannot reach" in line and "nothing was changed" in line
    assert "drctl_nope" not in done.stderr

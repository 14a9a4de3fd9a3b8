"""`drctl runbook`: validate names every mistake by path (exit 2); a typo'd option or a bad
parameter is exit 2 before anything reaches the control plane."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SHIPPED = ["dc-outage", "carrier-outage", "payment-brownout", "peak-capacity"]


def drctl(*args: str) -> subprocess.CompletedProcess[str]:
    # the URL answers nothing: a command that called it would exit 1 (unreachable), not 2
    env = {**os.environ, "DRCTL_URL": "http://127.0.0.1:9", "DRCTL_TOKEN": "x" * 32}
    return subprocess.run(
        [sys.executable, "-m", "control_plane", "runbook", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_shipped_runbooks_validate() -> None:
    done = drctl("validate", *SHIPPED)
    assert done.returncode == 0, done.stderr
    assert all(f"{name}: ok" in done.stdout for name in SHIPPED)


def test_a_bad_file_is_exit_2_with_every_mistake_on_its_own_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\ndescription: d\nsteps:\n"
        "  - {id: a, action: site.explode}\n"
        "  - {id: b, action: approval, timeout: soon}\n"
        "  - {id: c, action: site.failover, with: {site: icheon}}\n"
    )
    done = drctl("validate", str(bad))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert any(line.startswith(f"{bad}: steps[0].action: unknown action 'site.explode'") for line in lines), (
        lines
    )
    assert any(line.startswith(f"{bad}: steps[1].timeout: a duration") for line in lines), lines


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["validate", "dc-outrage"], "no runbook file or shipped runbook 'dc-outrage'"),
        (["run", "dc-outage", "--dryrun"], "No such option"),
        (["run", "dc-outage", "--param", "site"], "--param must be NAME=VALUE"),
        (["approve", "0"], "Invalid value"),
        (["abort", "3"], "Missing option '--reason'"),
    ],
)
def test_bad_input_is_exit_2_before_any_call(args: list[str], says: str) -> None:
    done = drctl(*args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert says in done.stderr, done.stderr

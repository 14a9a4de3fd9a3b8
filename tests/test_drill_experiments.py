"""Experiment files: the shipped ones validate; a careless one is refused with the path of every
error, and never by calling something it names that is not in the registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.drill.experiment import ExperimentError, PauseStep, Tolerance, load_experiment, scaled
from chaos.drill.registry import ACTIONS, PROBES
from control_plane.cli.drill_world import scaled_settings

SHIPPED = sorted((Path(__file__).parents[1] / "chaos" / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_experiment_validates(path: Path) -> None:
    x = load_experiment(path)
    assert x.method and x.rollbacks, "a shipped experiment undoes what it does"


def errors_of(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(ExperimentError) as caught:
        load_experiment(path)
    return caught.value.errors


def test_each_error_is_named_by_its_path(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        """
title: t
subject: icheon
load: {profile: peek}
method:
  - pause: 1
  - action: site_fault
    with: {site: icheon, mode: dwn, extra: 1}
  - action: site_fualt
  - probe: orders_lost
    tolerance: {min: 3, max: 1}
  - {wait: 3}
rollbacks:
  - action: clear_faults
    with: {x: 1}
bogus: 1
""",
    )
    assert errors == [
        "load.profile: Input should be 'steady', 'peak' or 'ramp'",
        "method[1]: with.mode: Input should be 'down', 'latency', 'error_rate' or 'partition'; "
        "with.extra: Extra inputs are not permitted",
        f"method[2]: unknown action 'site_fualt' (known: {', '.join(sorted(ACTIONS))})",
        "method[3].tolerance: min 3 is above max 1",
        "method[4]: a step is an action, a probe or a pause",
        "rollbacks[0]: with.x: Extra inputs are not permitted",
        "bogus: Extra inputs are not permitted",
    ]


def test_a_module_path_is_not_an_action(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path, "title: t\nsubject: icheon\nmethod:\n  - action: os.system\n    with: {cmd: rm}\n"
    )
    assert errors == [f"method[0]: unknown action 'os.system' (known: {', '.join(sorted(ACTIONS))})"]


def test_a_steady_state_probe_needs_a_tolerance(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path, "title: t\nsubject: icheon\nsteady_state:\n  - probe: orders_lost\nmethod:\n  - pause: 1\n"
    )
    assert errors == ["steady_state[0].tolerance: Field required"]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "the file must be a mapping (title, subject, method, ...)"),
        ("title: [unclosed\n", "line 2: not YAML"),
        ("title: t\nsubject: Icheon!\nmethod: [{pause: 1}]\n", "subject: String should match pattern"),
        ("title: t\nsubject: icheon\nmethod: []\n", "method: List should have at least 1 item"),
        (
            "title: t\nsubject: icheon\nmethod: [{pause: 99999}]\n",
            "method[0].pause: Input should be less than",
        ),
        (
            "title: t\nsubject: icheon\nload: {duration_s: 10, peak_end_s: 20}\nmethod: [{pause: 1}]\n",
            "load: peak_end_s 20 is past duration_s 10",
        ),
        (
            "title: t\nsubject: icheon\nload: {duration_s: 10}\nwarmup_s: 5\nmethod: [{pause: 6}]\n",
            "(file): warmup and method take up to 11 s but the load lasts 10 s",
        ),
    ],
)
def test_careless_files_are_refused(tmp_path: Path, text: str, error: str) -> None:
    assert any(e.startswith(error) or error in e for e in errors_of(tmp_path, text)), errors_of(
        tmp_path, text
    )


def test_a_missing_file_is_an_error_not_a_crash(tmp_path: Path) -> None:
    with pytest.raises(ExperimentError, match="No such file"):
        load_experiment(tmp_path / "nope.yaml")


def test_pauses_and_tolerances() -> None:
    assert PauseStep(pause=1.5).pause == 1.5
    assert Tolerance(max=0).holds(0) and not Tolerance(max=0).holds(1)
    assert Tolerance(min=1, max=2).holds(1.5) and not Tolerance(min=1, max=2).holds(2.5)
    assert Tolerance(equals=200).holds(200) and not Tolerance(equals=200).holds(503)
    assert not Tolerance(max=5).holds(None) and not Tolerance(max=5).holds("n/a")
    with pytest.raises(ValueError, match="give equals, min or max"):
        Tolerance()


def test_the_registry_names_the_issue_s_actions_and_probes() -> None:
    assert {"site_fault", "integration_outage", "kill_control_plane", "drop_database_connections",
            "failover", "failback", "clear_faults"} <= set(ACTIONS)  # fmt: skip
    assert {"http_get", "metric", "orders_lost", "orders_duplicated", "orders_held", "intake_p99_ms",
            "notices_unsent"} <= set(PROBES)  # fmt: skip


def test_a_short_form_world_runs_its_breaker_and_probe_clocks_at_the_same_scale() -> None:
    assert scaled_settings(0.2, {}) == {"DRCTL_BREAKER_RESET_TIMEOUT_S": "2", "DRCTL_PROBE_INTERVAL_S": "2"}
    # what the operator set wins; a full-length drill changes nothing
    assert scaled_settings(0.2, {"DRCTL_PROBE_INTERVAL_S": "1"}) == {"DRCTL_BREAKER_RESET_TIMEOUT_S": "2"}
    assert scaled_settings(1.0, {}) == {}
    (flood,) = [p for p in SHIPPED if p.stem == "icheon-flood-at-peak"]
    assert scaled(load_experiment(flood), 0.2).recover_hold_s == pytest.approx(0.6)

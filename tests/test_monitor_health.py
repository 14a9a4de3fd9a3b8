"""Probe hysteresis: down after the failure threshold, healthy after the success threshold, breakers count."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control_plane.domain import Health, InvalidInput
from control_plane.monitoring.health import (
    HealthState,
    HealthTracker,
    ProbePolicy,
    ProbeResult,
    Signal,
    observe_probe,
    observe_signal,
    probe_due,
)

from factories import NOW

POLICY = ProbePolicy(interval_s=10, timeout_s=2, failure_threshold=3, success_threshold=2)
TARGET = "site:icheon"


def at(seconds: float) -> ProbeResult:
    return ProbeResult(NOW + timedelta(seconds=seconds), ok=True, latency_s=0.01)


def fail(seconds: float, detail: str = "HTTP 503") -> ProbeResult:
    return ProbeResult(NOW + timedelta(seconds=seconds), ok=False, detail=detail)


def feed(results: list[ProbeResult], state: HealthState | None = None) -> HealthState:
    state = state or HealthState(TARGET)
    for result in results:
        state, _ = observe_probe(state, result, POLICY)
    return state


def healthy() -> HealthState:
    return feed([at(0), at(10)])


def test_a_new_target_is_unknown() -> None:
    assert HealthTracker(POLICY).health(TARGET) is Health.UNKNOWN


def test_success_threshold_successes_make_a_new_target_healthy() -> None:
    assert feed([at(0)]).health is Health.UNKNOWN
    assert feed([at(0), at(10)]).health is Health.HEALTHY


def test_one_failed_probe_marks_a_healthy_target_degraded() -> None:
    assert feed([fail(20)], healthy()).health is Health.DEGRADED


def test_failure_threshold_consecutive_failures_mark_the_target_down() -> None:
    state = feed([fail(20), fail(30)], healthy())
    assert state.health is Health.DEGRADED
    assert feed([fail(40)], state).health is Health.DOWN


def test_a_success_between_failures_restarts_the_count() -> None:
    state = feed([fail(20), fail(30), at(40), fail(50), fail(60)], healthy())
    assert state.health is Health.DEGRADED


def test_a_down_target_stays_down_on_fewer_successes_than_the_threshold() -> None:
    down = feed([fail(20), fail(30), fail(40)], healthy())
    assert feed([at(50)], down).health is Health.DOWN


def test_a_down_target_is_healthy_again_after_the_success_threshold() -> None:
    down = feed([fail(20), fail(30), fail(40)], healthy())
    assert feed([at(50), at(60)], down).health is Health.HEALTHY


def test_an_answer_slower_than_the_timeout_counts_as_a_failure() -> None:
    slow = ProbeResult(NOW + timedelta(seconds=20), ok=True, latency_s=2.5)
    state, transition = observe_probe(healthy(), slow, POLICY)
    assert state.health is Health.DEGRADED
    assert transition is not None and "over the 2 s timeout" in transition.reason


def test_a_dc_put_down_is_down_within_interval_times_threshold_and_back_after_the_success_threshold() -> None:
    # Given probes every 10 s and a DC that goes down at t=35 s and comes back at t=125 s
    tracker = HealthTracker(POLICY)
    down_at, back_at = 35.0, 125.0
    changes: list[tuple[Health, float]] = []
    for tick in range(0, 200, 10):
        ok = not down_at <= tick < back_at
        transition = tracker.probe(TARGET, at(tick) if ok else fail(tick))
        if transition is not None:
            changes.append((transition.to, (transition.at - NOW).total_seconds()))
    # Then it is down after interval x failure threshold (+/- one interval) ...
    went_down = next(t for to, t in changes if to is Health.DOWN)
    detected = went_down - down_at
    assert abs(detected - POLICY.interval_s * POLICY.failure_threshold) <= POLICY.interval_s
    # ... and healthy again after success_threshold probes (+/- one interval of phase)
    came_back = next(t for to, t in changes if to is Health.HEALTHY and t > went_down)
    assert abs(came_back - back_at - POLICY.interval_s * POLICY.success_threshold) <= POLICY.interval_s


def test_a_breaker_opening_marks_a_healthy_target_degraded_at_once() -> None:
    state, transition = observe_signal(healthy(), Signal.BREAKER_OPENED, NOW, POLICY)
    assert state.health is Health.DEGRADED
    assert transition is not None and transition.reason == "breaker opened"


def test_a_breaker_opening_never_marks_a_target_down() -> None:
    state, _ = observe_signal(healthy(), Signal.BREAKER_OPENED, NOW, POLICY)
    state = feed([fail(20), fail(30)], state)
    assert state.health is Health.DEGRADED


def test_an_open_breaker_holds_passing_probes_at_degraded() -> None:
    state, _ = observe_signal(healthy(), Signal.BREAKER_OPENED, NOW, POLICY)
    assert feed([at(20), at(30), at(40)], state).health is Health.DEGRADED


def test_a_breaker_signal_lapses_after_the_hold_so_passing_probes_win_when_its_close_was_lost() -> None:
    state, _ = observe_signal(healthy(), Signal.BREAKER_OPENED, NOW, POLICY)
    hold = POLICY.breaker_hold_s
    state = feed([at(hold - 20), at(hold - 10)], state)
    assert state.health is Health.DEGRADED
    # no "closed" ever arrives (the replica that saw the breaker open restarted)
    state = feed([at(hold), at(hold + 10)], state)
    assert state.health is Health.HEALTHY and not state.breaker_open


def test_a_breaker_opening_again_renews_the_hold() -> None:
    state, _ = observe_signal(healthy(), Signal.BREAKER_OPENED, NOW, POLICY)
    renewed = NOW + timedelta(seconds=POLICY.breaker_hold_s - 5)
    state, _ = observe_signal(state, Signal.BREAKER_OPENED, renewed, POLICY)
    state = feed([at(POLICY.breaker_hold_s), at(POLICY.breaker_hold_s + 10)], state)
    assert state.health is Health.DEGRADED


def test_a_breaker_closing_restores_healthy_when_probes_pass() -> None:
    state, _ = observe_signal(healthy(), Signal.BREAKER_OPENED, NOW, POLICY)
    state = feed([at(20), at(30)], state)
    state, transition = observe_signal(state, Signal.BREAKER_CLOSED, NOW + timedelta(seconds=35), POLICY)
    assert state.health is Health.HEALTHY
    assert transition is not None and transition.reason == "breaker closed and probes pass"


def test_a_breaker_closing_does_not_hide_a_recent_failed_probe() -> None:
    state, _ = observe_signal(healthy(), Signal.BREAKER_OPENED, NOW, POLICY)
    state = feed([fail(20), at(30)], state)
    state, _ = observe_signal(state, Signal.BREAKER_CLOSED, NOW + timedelta(seconds=35), POLICY)
    assert state.health is Health.DEGRADED


def test_a_transition_names_target_from_to_time_and_reason() -> None:
    state = feed([fail(20), fail(30)], healthy())
    _, transition = observe_probe(state, fail(40, "connection refused"), POLICY)
    assert transition is not None
    assert (transition.target, transition.from_, transition.to) == (TARGET, Health.DEGRADED, Health.DOWN)
    assert transition.at == NOW + timedelta(seconds=40)
    assert transition.reason == "3 consecutive failed probes (threshold 3): connection refused"


def test_no_transition_when_health_does_not_change() -> None:
    _, transition = observe_probe(healthy(), at(20), POLICY)
    assert transition is None


def test_the_state_remembers_when_health_last_changed() -> None:
    state = feed([fail(20), fail(30), fail(40), fail(50)], healthy())
    assert state.since == NOW + timedelta(seconds=40)


def test_an_invalid_policy_is_refused_naming_each_field() -> None:
    with pytest.raises(InvalidInput) as exc:
        ProbePolicy(interval_s=5, timeout_s=10, failure_threshold=0, success_threshold=1)
    assert {e.path for e in exc.value.errors} == {"timeout_s", "failure_threshold"}


def test_a_target_is_due_for_a_probe_one_interval_after_the_last() -> None:
    state = feed([at(0)])
    assert probe_due(HealthState(TARGET), POLICY, NOW)
    assert not probe_due(state, POLICY, NOW + timedelta(seconds=9.9))
    assert probe_due(state, POLICY, NOW + timedelta(seconds=10))


def test_the_tracker_keeps_targets_apart() -> None:
    tracker = HealthTracker(POLICY)
    for t in (0, 10):
        tracker.probe("site:icheon", at(t))
        tracker.probe("integration:erp", fail(t))
    assert tracker.snapshot() == {"site:icheon": Health.HEALTHY, "integration:erp": Health.DEGRADED}


# --- properties -------------------------------------------------------------------------------

policies = st.builds(
    lambda ft, stt: ProbePolicy(interval_s=10, timeout_s=2, failure_threshold=ft, success_threshold=stt),
    st.integers(1, 5),
    st.integers(1, 5),
)
events = st.lists(st.sampled_from(["ok", "fail", "open", "close"]), max_size=60)


def replay(policy: ProbePolicy, steps: list[str]) -> list[tuple[list[bool], HealthState, Health | None]]:
    """Apply `steps`; after each, yield (probe outcomes so far, state, health it moved to or None)."""
    state = HealthState(TARGET)
    probes: list[bool] = []
    out = []
    for i, step in enumerate(steps):
        when = NOW + timedelta(seconds=10 * i)
        if step in ("ok", "fail"):
            probes.append(step == "ok")
            result = ProbeResult(when, ok=step == "ok")
            state, transition = observe_probe(state, result, policy)
        else:
            signal = Signal.BREAKER_OPENED if step == "open" else Signal.BREAKER_CLOSED
            state, transition = observe_signal(state, signal, when, policy)
        out.append((list(probes), state, transition.to if transition else None))
    return out


@settings(max_examples=200, deadline=None)
@given(policies, events)
def test_never_down_before_failure_threshold_consecutive_failures(
    policy: ProbePolicy, steps: list[str]
) -> None:
    for probes, _, moved_to in replay(policy, steps):
        if moved_to is Health.DOWN:
            assert probes[-policy.failure_threshold :] == [False] * policy.failure_threshold
            assert len(probes) >= policy.failure_threshold


@settings(max_examples=200, deadline=None)
@given(policies, events)
def test_never_healthy_unless_the_last_success_threshold_probes_passed(
    policy: ProbePolicy, steps: list[str]
) -> None:
    for probes, state, _ in replay(policy, steps):
        if state.health is Health.HEALTHY:
            assert len(probes) >= policy.success_threshold
            assert probes[-policy.success_threshold :] == [True] * policy.success_threshold
            assert not state.breaker_open

"""The built-in alert engine: pending -> firing -> resolved, one notification each, repeats, silences."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control_plane.alerting.engine import (
    AlertState,
    AlertStatus,
    Notification,
    NotificationKind,
    evaluate,
    fingerprint,
    firing_counts,
)
from control_plane.alerting.observation import DeliveryCounts, IntakeRate, Observation
from control_plane.alerting.rules import Thresholds, builtin_rules
from control_plane.alerting.silence_rules import Matcher, Silence
from control_plane.domain import BreakerState, Health
from control_plane.monitoring.health import HealthTracker, ProbePolicy, ProbeResult

from factories import NOW

RULES = builtin_rules()
REPEAT_S = 3600.0
ICHEON_DOWN = Observation(site_health={"icheon": Health.DOWN, "busan": Health.HEALTHY})
ALL_WELL = Observation(site_health={"icheon": Health.HEALTHY, "busan": Health.HEALTHY})
SITE_DOWN_FOR = Thresholds().site_down_for_s


def t(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def run(
    ticks: Sequence[tuple[float, Observation]],
    silences: Sequence[Silence] = (),
    states: Mapping[str, AlertState] | None = None,
) -> tuple[dict[str, AlertState], list[Notification]]:
    """Evaluate each (seconds after NOW, observation) tick in order; return final states and all notes."""
    current: dict[str, AlertState] = dict(states or {})
    sent: list[Notification] = []
    for seconds, obs in ticks:
        current, notes = evaluate(RULES, obs, current, silences, t(seconds), REPEAT_S)
        sent.extend(notes)
    return current, sent


def kinds(notes: Sequence[Notification]) -> list[str]:
    return [n.kind.value for n in notes]


def silence(matchers: tuple[Matcher, ...], start: float = 0, end: float = 7200) -> Silence:
    return Silence("sil-1", matchers, t(start), t(end), "ops@example.com", "maintenance")


def every_15s(until: float, obs: Observation, start: float = 0) -> list[tuple[float, Observation]]:
    return [(float(s), obs) for s in range(int(start), int(until), 15)]


def test_a_true_condition_starts_pending_without_a_notification() -> None:
    states, notes = run([(0, ICHEON_DOWN)])
    assert [s.status for s in states.values()] == [AlertStatus.PENDING]
    assert notes == []


def test_the_alert_does_not_fire_before_its_for_duration() -> None:
    _, notes = run([(0, ICHEON_DOWN), (SITE_DOWN_FOR - 1, ICHEON_DOWN)])
    assert notes == []


def test_the_alert_fires_once_its_for_duration_has_passed() -> None:
    states, notes = run([(0, ICHEON_DOWN), (SITE_DOWN_FOR, ICHEON_DOWN)])
    assert kinds(notes) == ["firing"]
    assert notes[0].labels == {"alertname": "SiteDown", "severity": "critical", "site": "icheon"}
    assert notes[0].annotations["summary"] == "DC icheon is down"
    assert notes[0].starts_at == t(SITE_DOWN_FOR) and notes[0].ends_at is None
    assert next(iter(states.values())).status is AlertStatus.FIRING


def test_a_zero_for_duration_fires_at_the_first_evaluation() -> None:
    rules = builtin_rules(Thresholds(site_down_for_s=0))
    _, notes = evaluate(rules, ICHEON_DOWN, {}, [], NOW, REPEAT_S)
    assert kinds(notes) == ["firing"]


def test_a_firing_alert_sends_exactly_one_firing_notification() -> None:
    _, notes = run(every_15s(REPEAT_S - 1, ICHEON_DOWN))
    assert kinds(notes) == ["firing"]


def test_a_firing_alert_repeats_only_after_the_repeat_interval() -> None:
    states: dict[str, AlertState] = {}
    sent: list[tuple[float, NotificationKind]] = []
    for seconds, obs in every_15s(2 * REPEAT_S + 2 * SITE_DOWN_FOR, ICHEON_DOWN):
        states, notes = evaluate(RULES, obs, states, [], t(seconds), REPEAT_S)
        sent.extend((seconds, n.kind) for n in notes)
    fired = SITE_DOWN_FOR
    assert sent == [
        (fired, NotificationKind.FIRING),
        (fired + REPEAT_S, NotificationKind.REPEAT),
        (fired + 2 * REPEAT_S, NotificationKind.REPEAT),
    ]


def test_a_cleared_condition_sends_exactly_one_resolve() -> None:
    ticks = [*every_15s(120, ICHEON_DOWN), *every_15s(600, ALL_WELL, start=120)]
    states, notes = run(ticks)
    assert kinds(notes) == ["firing", "resolved"]
    assert notes[1].ends_at == t(120)
    assert next(iter(states.values())).status is AlertStatus.RESOLVED


def test_a_pending_alert_that_clears_is_dropped_without_a_word() -> None:
    states, notes = run([(0, ICHEON_DOWN), (30, ALL_WELL)])
    assert states == {} and notes == []


def test_firing_again_after_a_resolve_is_a_new_episode() -> None:
    ticks = [*every_15s(120, ICHEON_DOWN), (120, ALL_WELL), *every_15s(300, ICHEON_DOWN, start=135)]
    _, notes = run(ticks)
    assert kinds(notes) == ["firing", "resolved", "firing"]


def test_a_resolved_alert_is_kept_for_a_while_then_dropped() -> None:
    states, _ = run([*every_15s(120, ICHEON_DOWN), (120, ALL_WELL)])
    kept, _ = evaluate(RULES, ALL_WELL, states, [], t(120 + 3599), REPEAT_S, keep_resolved_s=3600)
    dropped, _ = evaluate(RULES, ALL_WELL, states, [], t(120 + 3600), REPEAT_S, keep_resolved_s=3600)
    assert len(kept) == 1 and dropped == {}


def test_a_silence_suppresses_notifications_but_keeps_the_state() -> None:
    sil = silence((Matcher("alertname", "SiteDown"), Matcher("site", "icheon")))
    states, notes = run(every_15s(600, ICHEON_DOWN), [sil])
    assert notes == []
    (state,) = states.values()
    assert state.status is AlertStatus.FIRING and state.silenced_by == ("sil-1",)


def test_a_silence_for_another_site_does_not_suppress() -> None:
    sil = silence((Matcher("site", "busan"),))
    _, notes = run(every_15s(120, ICHEON_DOWN), [sil])
    assert kinds(notes) == ["firing"]


def test_the_firing_notification_goes_out_when_the_silence_ends() -> None:
    sil = silence((Matcher("site", "icheon"),), end=300)
    _, notes = run(every_15s(600, ICHEON_DOWN), [sil])
    assert kinds(notes) == ["firing"]
    assert notes[0].starts_at == t(SITE_DOWN_FOR)  # it started firing then, it is told now


def test_a_resolve_is_sent_under_a_silence_once_a_firing_went_out() -> None:
    sil = silence((Matcher("site", "icheon"),), start=300)
    _, notes = run([*every_15s(600, ICHEON_DOWN), (600, ALL_WELL)], [sil])
    assert kinds(notes) == ["firing", "resolved"]


def test_an_alert_silenced_for_its_whole_life_resolves_silently() -> None:
    sil = silence((Matcher("site", "icheon"),))
    _, notes = run([*every_15s(600, ICHEON_DOWN), (600, ALL_WELL)], [sil])
    assert notes == []


def test_each_site_is_its_own_alert() -> None:
    both = Observation(site_health={"icheon": Health.DOWN, "busan": Health.DOWN})
    states, notes = run([(0, both), (SITE_DOWN_FOR, both)])
    assert sorted(n.labels["site"] for n in notes) == ["busan", "icheon"]
    assert len(states) == 2


def test_the_fingerprint_is_stable_across_processes_and_label_order() -> None:
    a = fingerprint("SiteDown", {"site": "icheon", "severity": "critical"})
    b = fingerprint("SiteDown", {"severity": "critical", "site": "icheon"})
    assert a == b == "ea606296914c819e"  # pinned: stored fingerprints must not change
    assert fingerprint("SiteDown", {"site": "busan", "severity": "critical"}) != a


def test_firing_counts_cover_every_rule_with_zero_for_quiet_ones() -> None:
    states, _ = run([(0, ICHEON_DOWN), (SITE_DOWN_FOR, ICHEON_DOWN)])
    counts = firing_counts(RULES, states.values())
    assert counts["SiteDown"] == 1
    assert sum(counts.values()) == 1 and len(counts) == len(RULES) == 9


OBSERVATIONS_THAT_FIRE: dict[str, tuple[Observation, dict[str, str]]] = {
    "SiteDown": (Observation(site_health={"icheon": Health.DOWN}), {"site": "icheon"}),
    "IntegrationDown": (
        Observation(integration_health={"cj-logistics": Health.DOWN}),
        {"integration": "cj-logistics"},
    ),
    "BreakerOpen": (
        Observation(breakers={"icheon": BreakerState.HALF_OPEN}),
        {"breaker": "icheon"},
    ),
    "OrdersHeld": (Observation(orders_held=3), {}),
    "BackupCapacityHigh": (Observation(site_load_ratio={"daejeon": 0.9}), {"site": "daejeon"}),
    "NoticeDeliveryFailing": (
        Observation(notices={"email": DeliveryCounts(sent=20, failed=5)}),
        {"channel": "email"},
    ),
    "OrderIntakeDropped": (
        Observation(intake={"coupang": IntakeRate(observed_per_hour=17, expected_per_hour=60)}),
        {"channel": "coupang"},
    ),
    "RecoveryExceedsRto": (
        Observation(site_recovery={"icheon": (18_000.0, 14_400.0), "busan": (60.0, 3_600.0)}),
        {"site": "icheon"},
    ),
    "FailoverExpired": (Observation(failovers_expired={"icheon": 30.0}), {"site": "icheon"}),
}

OBSERVATIONS_THAT_DO_NOT: dict[str, Observation] = {
    "SiteDown": Observation(site_health={"icheon": Health.DEGRADED, "busan": Health.UNKNOWN}),
    "IntegrationDown": Observation(integration_health={"hanjin": Health.DEGRADED}),
    "BreakerOpen": Observation(breakers={"icheon": BreakerState.CLOSED}),
    "OrdersHeld": Observation(orders_held=0),
    "BackupCapacityHigh": Observation(site_load_ratio={"daejeon": 0.89}),
    "NoticeDeliveryFailing": Observation(
        notices={"email": DeliveryCounts(sent=100, failed=20), "sms": DeliveryCounts(sent=0, failed=4)}
    ),
    "OrderIntakeDropped": Observation(
        intake={
            "coupang": IntakeRate(observed_per_hour=18, expected_per_hour=60),
            "naver": IntakeRate(observed_per_hour=0, expected_per_hour=29),
        }
    ),
    "RecoveryExceedsRto": Observation(site_recovery={"icheon": (14_400.0, 14_400.0)}),  # at it is within
    "FailoverExpired": Observation(),  # no failover past its expiry
}


@pytest.mark.parametrize("name", sorted(OBSERVATIONS_THAT_FIRE))
def test_each_builtin_rule_fires_after_its_for_duration(name: str) -> None:
    obs, labels = OBSERVATIONS_THAT_FIRE[name]
    rule = next(r for r in RULES if r.name == name)
    _, notes = run([(0, obs), (rule.for_s - 1, obs), (rule.for_s, obs)])
    assert [(n.kind, n.labels) for n in notes] == [
        (NotificationKind.FIRING, {**labels, "alertname": name, "severity": rule.severity})
    ]


@pytest.mark.parametrize("name", sorted(OBSERVATIONS_THAT_DO_NOT))
def test_each_builtin_rule_stays_quiet_below_its_threshold(name: str) -> None:
    obs = OBSERVATIONS_THAT_DO_NOT[name]
    rule = next(r for r in RULES if r.name == name)
    states, notes = run([(0, obs), (rule.for_s, obs)])
    assert notes == [] and states == {}


def test_descriptions_render_the_value() -> None:
    obs, _ = OBSERVATIONS_THAT_FIRE["OrderIntakeDropped"]
    _, notes = run([(0, obs), (Thresholds().intake_dropped_for_s, obs)])
    assert notes[0].annotations["description"] == (
        "Orders from coupang are below 30% of the same hour last week (60/h then)."
    )


def test_a_dc_put_down_raises_site_down_once_repeats_after_the_interval_and_resolves_once() -> None:
    # Given a prober (10 s interval, 3 failures to down, 2 successes to healthy) feeding the engine
    policy = ProbePolicy(interval_s=10, timeout_s=2, failure_threshold=3, success_threshold=2)
    tracker = HealthTracker(policy)
    states: dict[str, AlertState] = {}
    sent: list[tuple[datetime, Notification]] = []
    fault_from, fault_until = 100, 100 + REPEAT_S + 600
    for second in range(0, int(fault_until) + 300, 10):
        ok = not fault_from <= second < fault_until
        tracker.probe("icheon", ProbeResult(t(second), ok=ok, detail="" if ok else "connection refused"))
        obs = Observation(site_health=tracker.snapshot())
        states, notes = evaluate(RULES, obs, states, [], t(second), REPEAT_S)
        sent.extend((t(second), n) for n in notes)
    # Then: down after ~30 s, firing 60 s later, one repeat an hour on, one resolve after recovery
    assert [n.kind.value for _, n in sent] == ["firing", "repeat", "resolved"]
    (fired_at, _), (repeated_at, _), (resolved_at, _) = sent
    assert 80 <= (fired_at - t(fault_from)).total_seconds() <= 100
    assert (repeated_at - fired_at).total_seconds() == REPEAT_S
    assert t(fault_until) < resolved_at <= t(fault_until + 30)


# --- properties -------------------------------------------------------------------------------

steps = st.lists(
    st.tuples(st.booleans(), st.booleans(), st.integers(1, 900)),  # (site down?, silenced?, seconds)
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(steps)
def test_at_most_one_firing_per_episode_and_resolve_only_after_a_firing(
    script: list[tuple[bool, bool, int]],
) -> None:
    states: dict[str, AlertState] = {}
    now = NOW
    sil = Silence("s", (Matcher("site", "icheon"),), NOW, NOW + timedelta(days=365), "ops")
    told_firing = False  # within the current episode
    last_told: datetime | None = None
    for site_down, silenced, dt in script:
        now += timedelta(seconds=dt)
        obs = ICHEON_DOWN if site_down else ALL_WELL
        states, notes = evaluate(RULES, obs, states, [sil] if silenced else [], now, REPEAT_S)
        for note in notes:
            if note.kind is NotificationKind.FIRING:
                assert not told_firing
                told_firing, last_told = True, now
            elif note.kind is NotificationKind.REPEAT:
                assert told_firing and last_told is not None
                assert (now - last_told).total_seconds() >= REPEAT_S
                last_told = now
            else:
                assert told_firing
                told_firing, last_told = False, None
        if not site_down:
            assert not told_firing  # an episode that was told ends with its resolve

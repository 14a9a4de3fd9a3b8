"""Failover and failback safety rules: each refuses the change built to break it, by name and numbers."""

from __future__ import annotations

import pytest

from control_plane.domain import BreakerState, Conflict, GeoPoint, Health, InvalidInput, Region, SiteState
from failover.eta import EtaModel
from failover.safety import (
    MIN_ACCEPTING_SITES,
    ONE_CHANGE_PER_SITE,
    REGION_COVERAGE,
    SITE_HEALTHY,
    TARGET_CAPACITY,
    TARGET_STOCK,
    RuleResult,
    SafetyPolicy,
    enforce,
    evaluate_failback,
    evaluate_failover,
    expected_hourly_demand,
    refusal,
    spare_capacity,
)

from factories import NOW, site, state

MODEL = EtaModel()
POLICY = SafetyPolicy(min_accepting_sites=2, capacity_margin=1.2)
ICHEON = site("icheon", 37.27, 127.44)
DAEJEON = site("daejeon", 36.35, 127.38)
BUSAN = site("busan", 35.18, 129.08)
GWANGJU = site("gwangju", 35.16, 126.85)
CAPITAL = Region("capital", "Capital", GeoPoint(37.5, 127.0), 0.5, max_transit_hours=48)
# only Busan (≈6.1 h to this centroid) is within 8 h; Daejeon is ≈9.2 h, Gwangju ≈9.3 h, Icheon ≈10.5 h
SOUTHEAST = Region("southeast", "Southeast", GeoPoint(35.2, 129.0), 0.2, max_transit_hours=8)


def world(**overrides: SiteState) -> list[SiteState]:
    """Four healthy sites, with any of them replaced by code."""
    base = {s.code: state(s) for s in (ICHEON, DAEJEON, BUSAN, GWANGJU)}
    base.update(overrides)
    return list(base.values())


def failover_rules(
    failed: str,
    sites: list[SiteState],
    targets: list[str] | None = None,
    moved: int = 100,
    demand: float = 50.0,
    policy: SafetyPolicy = POLICY,
    regions: tuple[Region, ...] = (CAPITAL, SOUTHEAST),
) -> dict[str, RuleResult]:
    results = evaluate_failover(failed, sites, regions, targets, moved, demand, policy, MODEL, NOW)
    return {r.name: r for r in results}


# --- every rule evaluated, all pass when there is room ---


def test_failover_evaluates_every_rule_and_passes_when_the_world_has_room() -> None:
    rules = failover_rules("icheon", world())
    assert list(rules) == [MIN_ACCEPTING_SITES, REGION_COVERAGE, TARGET_CAPACITY, TARGET_STOCK]
    assert all(r.ok for r in rules.values())
    assert refusal(list(rules.values())) is None


# --- min_accepting_sites ---


def test_failover_refuses_when_it_would_leave_fewer_than_min_accepting_sites() -> None:
    sites = world(daejeon=state(DAEJEON, accepting=False), gwangju=state(GWANGJU, accepting=False))
    rule = failover_rules("icheon", sites)[MIN_ACCEPTING_SITES]
    assert not rule.ok
    assert rule.numbers == {"min_accepting_sites": 2, "accepting_before": 2, "accepting_after": 1}


def test_failover_refuses_when_last_accepting_site() -> None:
    sites = [state(ICHEON), state(BUSAN, accepting=False)]
    policy = SafetyPolicy(min_accepting_sites=1)
    results = evaluate_failover("icheon", sites, (), None, 0, 0.0, policy, MODEL, NOW)
    refused = refusal(results)
    assert refused is not None and refused.name == MIN_ACCEPTING_SITES
    assert refused.numbers["accepting_after"] == 0


def test_down_breaker_open_and_impaired_sites_do_not_count_as_accepting() -> None:
    sites = world(
        daejeon=state(DAEJEON, health=Health.DOWN),
        busan=state(BUSAN, breaker=BreakerState.OPEN),
        gwangju=state(GWANGJU, impaired=True),
    )
    rule = failover_rules("icheon", sites, policy=SafetyPolicy(min_accepting_sites=1))[MIN_ACCEPTING_SITES]
    assert not rule.ok
    assert rule.numbers["accepting_after"] == 0


def test_failing_over_a_site_that_already_serves_nothing_passes_min_accepting_sites() -> None:
    # two sites, one of them down: failing it over takes no capacity away, so the rule allows it
    sites = [state(ICHEON, health=Health.DOWN), state(BUSAN)]
    rule = failover_rules("icheon", sites, regions=())[MIN_ACCEPTING_SITES]
    assert rule.ok
    assert rule.numbers["accepting_after"] == 1


# --- region_coverage ---


def test_failover_refuses_when_a_region_loses_its_only_site_within_max_transit() -> None:
    rule = failover_rules("busan", world())[REGION_COVERAGE]
    assert not rule.ok
    assert rule.numbers["region"] == "southeast"
    assert rule.numbers["best_site"] == "daejeon"
    assert rule.numbers["max_transit_hours"] == 8
    assert float(rule.numbers["best_transit_hours"]) > 8


def test_region_coverage_passes_when_another_site_is_within_max_transit() -> None:
    ulsan = site("ulsan", 35.54, 129.31)  # ≈6.7 h to the southeast centroid
    rule = failover_rules("busan", [*world(), state(ulsan)])[REGION_COVERAGE]
    assert rule.ok


def test_region_coverage_does_not_count_a_site_that_is_not_accepting() -> None:
    ulsan = site("ulsan", 35.54, 129.31)
    rule = failover_rules("busan", [*world(), state(ulsan, accepting=False)])[REGION_COVERAGE]
    assert not rule.ok


def test_region_already_without_a_site_in_reach_does_not_refuse_an_unrelated_failover() -> None:
    # Busan is down: the southeast is uncovered before Icheon's failover and not because of it
    rule = failover_rules("icheon", world(busan=state(BUSAN, health=Health.DOWN)))[REGION_COVERAGE]
    assert rule.ok
    assert rule.numbers["regions_already_uncovered"] == 1


# --- target_capacity ---


def test_failover_refuses_when_targets_lack_spare_capacity() -> None:
    # Busan alone: 1000 - 900 = 100 spare < (100 moved + 50 expected) x 1.2 = 180
    busan = state(BUSAN, routed_this_hour=900)
    rule = failover_rules("icheon", world(busan=busan), targets=["busan"])[TARGET_CAPACITY]
    assert not rule.ok
    assert rule.numbers["spare_next_hour"] == 100
    assert rule.numbers["needed"] == 180


def test_target_capacity_passes_at_exactly_the_margin() -> None:
    busan = state(BUSAN, routed_this_hour=820)  # 180 spare, 180 needed
    rule = failover_rules("icheon", world(busan=busan), targets=["busan"])[TARGET_CAPACITY]
    assert rule.ok


def test_target_capacity_without_targets_counts_every_other_site() -> None:
    rule = failover_rules("icheon", world())[TARGET_CAPACITY]
    assert rule.numbers["spare_next_hour"] == 3000  # three other sites, 1000 each, none loaded


def test_target_capacity_gives_no_credit_for_a_target_that_serves_none() -> None:
    sites = world(busan=state(BUSAN, breaker=BreakerState.OPEN))
    rule = failover_rules("icheon", sites, targets=["busan", "gwangju"])[TARGET_CAPACITY]
    assert rule.numbers["spare_next_hour"] == 1000


def test_spare_capacity_never_goes_negative_on_an_overloaded_site() -> None:
    assert spare_capacity(state(BUSAN, routed_this_hour=1200)) == 0


def test_targets_naming_the_failed_or_an_unknown_site_are_invalid_input_with_paths() -> None:
    with pytest.raises(InvalidInput) as caught:
        failover_rules("icheon", world(), targets=["busan", "icheon", "jeju"])
    assert [e.path for e in caught.value.errors] == ["targets[1]", "targets[2]"]


def test_empty_targets_are_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        failover_rules("icheon", world(), targets=[])


def test_expected_hourly_demand_prefers_the_bia_and_falls_back_to_recent_intake() -> None:
    assert expected_hourly_demand(120.0, recent_orders=600, recent_window_hours=3) == 120.0
    assert expected_hourly_demand(None, recent_orders=600, recent_window_hours=3) == 200.0


# --- failback: site_healthy ---


@pytest.mark.parametrize(
    "overrides",
    [
        {"health": Health.DOWN},
        {"health": Health.DEGRADED},
        {"health": Health.UNKNOWN},
        {"breaker": BreakerState.OPEN},
        {"impaired": True},
    ],
)
def test_failback_refuses_while_the_site_is_unhealthy(overrides: dict[str, object]) -> None:
    results = evaluate_failback(state(ICHEON, accepting=False, **overrides), POLICY)
    refused = refusal(results)
    assert refused is not None and refused.name == SITE_HEALTHY


def test_failback_passes_when_the_site_is_healthy() -> None:
    assert refusal(evaluate_failback(state(ICHEON, accepting=False), POLICY)) is None


def test_failback_health_check_can_be_turned_off_by_policy() -> None:
    policy = SafetyPolicy(health_required_for_failback=False)
    assert refusal(evaluate_failback(state(ICHEON, health=Health.DOWN), policy)) is None


# --- refusal and force ---


def test_refusal_names_the_first_failing_rule() -> None:
    sites = world(busan=state(BUSAN, routed_this_hour=1000), gwangju=state(GWANGJU, accepting=False))
    results = list(failover_rules("busan", sites, targets=["gwangju"]).values())
    refused = refusal(results)
    assert refused is not None and refused.name == REGION_COVERAGE


def test_refused_change_raises_conflict_with_the_rule_name_and_numbers() -> None:
    results = list(failover_rules("busan", world()).values())
    with pytest.raises(Conflict) as caught:
        enforce(results, force=False, reason="flood")
    assert caught.value.rule == REGION_COVERAGE
    assert caught.value.details["region"] == "southeast"


def test_force_with_a_reason_passes_and_returns_the_overridden_rules_for_the_audit() -> None:
    results = list(failover_rules("busan", world()).values())
    overridden = enforce(results, force=True, reason="flood at Busan, southeast served late on purpose")
    assert [r.name for r in overridden] == [REGION_COVERAGE]


def test_force_without_a_reason_is_invalid_input() -> None:
    results = list(failover_rules("busan", world()).values())
    with pytest.raises(InvalidInput) as caught:
        enforce(results, force=True, reason="  ")
    assert caught.value.errors[0].path == "reason"


def test_passing_rules_need_no_force() -> None:
    assert enforce(list(failover_rules("icheon", world()).values()), force=False, reason=None) == ()


def test_rule_names_are_distinct_for_the_409_answer() -> None:
    names = {MIN_ACCEPTING_SITES, REGION_COVERAGE, TARGET_CAPACITY, SITE_HEALTHY, ONE_CHANGE_PER_SITE}
    assert len(names) == 5
    assert ONE_CHANGE_PER_SITE == "one_change_per_site"

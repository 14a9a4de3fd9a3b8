"""Business-aware failover, pure parts: the target_stock rule, option pricing and the recommendation."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bia.decision import HOLD, Candidate, DemandProfile, OptionFacts, option_cost, recommend
from bia.params import BiaParams
from control_plane.domain import GeoPoint, Health, Region, split_by_weight
from failover.eta import EtaModel
from failover.safety import (
    TARGET_STOCK,
    CriticalSku,
    SafetyPolicy,
    StockCheck,
    enforce,
    evaluate_failover,
    target_stock,
)

from factories import site, state

ICHEON = site("icheon", 37.27, 127.44, capacity_per_hour=100, backups=("daejeon", "busan"))
DAEJEON = site("daejeon", 36.35, 127.38, capacity_per_hour=100)
BUSAN = site("busan", 35.18, 129.08, capacity_per_hour=100)
SITES = {s.code: s for s in (ICHEON, DAEJEON, BUSAN)}
CAPITAL = Region("capital", "Capital", GeoPoint(37.5, 127.0), 0.7, max_transit_hours=48)
SOUTHEAST = Region("southeast", "Southeast", GeoPoint(35.2, 129.0), 0.3, max_transit_hours=48)
REGIONS = {r.code: r for r in (CAPITAL, SOUTHEAST)}
# a Monday 10:00 in Seoul
NOW = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
HOW = 10


def check(**available: int) -> StockCheck:
    """Icheon's two critical SKUs (10 and 2 units an hour); free stock given as site__sku=units."""
    return StockCheck(
        critical=(CriticalSku("KR-1", 10.0, 8.0), CriticalSku("KR-2", 2.0, 2.0)),
        own_units_per_hour={("daejeon", "KR-1"): 1.0},
        available={tuple(k.split("__")): v for k, v in available.items()},  # type: ignore[misc]
        in_flight_units={"KR-1": 5},
        hours=24.0,
    )


TARGETS = [state(DAEJEON), state(BUSAN)]


# --- target_stock ---


def test_target_stock_flags_each_short_sku_with_its_shortfall_per_target() -> None:
    # KR-1: need 24 x 10 + 5 in flight = 245; Daejeon offers 100 - 24 (its own day) = 76, Busan 69
    rule = target_stock("icheon", TARGETS, check(**{"daejeon__KR-1": 100, "busan__KR-1": 69}))
    assert rule.name == TARGET_STOCK and rule.ok and rule.warning  # warn: flagged, not refused
    short = [r for r in rule.rows if r["sku"] == "KR-1"]
    assert {r["target"]: r["spare"] for r in short} == {"daejeon": 76, "busan": 69}
    assert sum(int(r["shortfall"]) for r in short) == 245 - 76 - 69
    # KR-2 is held nowhere: its whole need (48) is short, split by the targets' spare capacity
    assert sum(int(r["shortfall"]) for r in rule.rows if r["sku"] == "KR-2") == 48
    assert rule.numbers["short_skus"] == 2 and rule.numbers["sku"] == "KR-1"
    assert "KR-1 short 100" in rule.detail and "pre-position" in rule.detail


def test_target_stock_refuses_by_setting_and_force_overrides_it() -> None:
    rule = target_stock("icheon", TARGETS, check(), mode="refuse")
    assert not rule.ok and not rule.warning
    with pytest.raises(Exception) as refused:
        enforce([rule], force=False, reason=None)
    assert refused.value.rule == TARGET_STOCK  # type: ignore[attr-defined]
    assert {r["sku"] for r in refused.value.details["rows"]} == {"KR-1", "KR-2"}  # type: ignore[attr-defined]
    assert enforce([rule], force=True, reason="stock arrives at 06:00") == (rule,)


def test_target_stock_passes_once_the_shortfall_is_stocked() -> None:
    short = target_stock("icheon", TARGETS, check(**{"daejeon__KR-1": 100}), mode="refuse")
    stocked: dict[str, int] = {"daejeon__KR-1": 100}
    for row in short.rows:
        key = f"{row['target']}__{row['sku']}"
        stocked[key] = stocked.get(key, 0) + int(row["shortfall"])
    rule = target_stock("icheon", TARGETS, check(**stocked), mode="refuse")
    assert rule.ok and not rule.warning and not rule.rows
    assert rule.numbers["orders_held_over_horizon"] == 0


def test_target_stock_counts_the_orders_it_would_hold_over_the_horizon() -> None:
    # KR-1: 76 spare at Daejeon, 5 of them for in-flight orders: 71 units = 7.1 h of 10/h, so
    # 8 orders/h are held for the remaining 16.9 h; KR-2 (2 orders/h) for all 24 h
    rule = target_stock("icheon", [state(DAEJEON)], check(**{"daejeon__KR-1": 100}))
    assert rule.numbers["orders_held_over_horizon"] == pytest.approx(8 * 16.9 + 2 * 24, abs=0.1)


def test_target_stock_ignores_targets_that_serve_no_orders() -> None:
    down = state(BUSAN, health=Health.DOWN)
    rule = target_stock(
        "icheon", [state(DAEJEON), down], check(**{"busan__KR-1": 10_000, "busan__KR-2": 10_000})
    )
    assert rule.warning and {r["target"] for r in rule.rows} == {"daejeon"}


def test_target_stock_without_a_bia_passes_and_says_it_did_not_check() -> None:
    rule = target_stock("icheon", TARGETS, None, mode="refuse")
    assert rule.ok and "not checked" in rule.detail


def test_every_failover_evaluates_target_stock_with_the_policy_mode() -> None:
    policy = SafetyPolicy(min_accepting_sites=1, target_stock="refuse")
    rules = evaluate_failover(
        "icheon",
        [state(ICHEON), *TARGETS],
        list(REGIONS.values()),
        None,
        0,
        1.0,
        policy,
        EtaModel(),
        NOW,
        check(),
    )
    assert [r.name for r in rules if not r.ok] == [TARGET_STOCK]


@given(st.integers(0, 10_000), st.lists(st.floats(0, 1e6), min_size=1, max_size=6))
def test_split_by_weight_hands_out_exactly_the_total(total: int, weights: list[float]) -> None:
    parts = split_by_weight(total, {f"s{i}": w for i, w in enumerate(weights)})
    assert sum(parts.values()) == total and all(v >= 0 for v in parts.values())


# --- pricing ---


def profile(orders: float = 60.0, revenue: float = 6_000_000.0, southeast: float = 0.0) -> DemandProfile:
    by_how = [0.0] * 168
    revenue_by_how = [0.0] * 168
    by_how[HOW], revenue_by_how[HOW] = orders, revenue
    shares = {"capital": 1.0 - southeast, "southeast": southeast} if southeast else {"capital": 1.0}
    return DemandProfile("icheon", tuple(by_how), tuple(revenue_by_how), shares, BiaParams(), "test")


def facts(targets: tuple[str, ...], spare: float = 100.0, **kw: object) -> OptionFacts:
    base = OptionFacts("x", targets, {t: spare for t in targets}, 0.0, 0, 0, 0, 0)
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def test_holding_puts_every_order_and_its_revenue_at_risk() -> None:
    cost = option_cost(facts((), in_flight=3, in_flight_held=3), profile(), ICHEON, SITES, REGIONS, NOW)
    assert cost.orders_at_risk_per_hour == 60 and cost.revenue_at_risk_per_hour == pytest.approx(6_000_000)
    p = BiaParams()
    per_order = (
        p.late_order_cost
        + p.gross_margin * p.cancel_probability * 100_000
        + p.churn_probability * p.customer_lifetime_value
    )
    assert cost.cost_per_hour == pytest.approx(60 * per_order)
    assert cost.one_off_cost == pytest.approx(3 * per_order)


def test_a_backup_with_room_takes_every_order_at_its_extra_fulfilment_cost() -> None:
    cost = option_cost(facts(("daejeon",)), profile(), ICHEON, SITES, REGIONS, NOW)
    assert cost.absorbed_per_hour == 60 and cost.orders_at_risk_per_hour == 0
    assert cost.extra_transit_hours is not None and cost.extra_transit_hours > 0
    assert cost.cost_per_hour == pytest.approx(cost.extra_cost_per_hour) and cost.cost_per_hour > 0


def test_capacity_and_stock_limit_what_an_option_absorbs() -> None:
    short_capacity = option_cost(facts(("daejeon",), spare=40.0), profile(), ICHEON, SITES, REGIONS, NOW)
    assert short_capacity.held_per_hour == pytest.approx(20)
    short_stock = option_cost(
        facts(("daejeon",), stock_held_per_hour=15.0), profile(), ICHEON, SITES, REGIONS, NOW
    )
    assert short_stock.held_per_hour == pytest.approx(15)


def test_extra_transit_beyond_the_promise_slack_makes_moved_orders_late() -> None:
    # the capital's orders sent to Busan arrive about 4.5 h later than from Icheon: past the 4 h slack
    cost = option_cost(facts(("busan",)), profile(), ICHEON, SITES, REGIONS, NOW)
    assert cost.late_per_hour == pytest.approx(60) and cost.orders_at_risk_per_hour == pytest.approx(60)


def test_the_recommendation_is_the_cheapest_option_that_passes_every_rule() -> None:
    chosen = recommend([Candidate("default", 900.0, None), Candidate(HOLD, 5000.0, None)], "KRW")
    assert chosen.option == "default" and "cheapest" in chosen.reason


def test_when_the_cheapest_breaks_a_rule_the_next_one_is_recommended_and_why() -> None:
    chosen = recommend(
        [
            Candidate("default", 900.0, None),
            Candidate("backup:daejeon", 500.0, "target_capacity"),
            Candidate(HOLD, 5000.0, None),
        ],
        "KRW",
    )
    assert chosen.option == "default"
    assert "backup:daejeon 500 KRW breaks target_capacity" in chosen.reason


def test_when_every_option_breaks_a_rule_none_is_recommended() -> None:
    chosen = recommend([Candidate("default", 1.0, "min_accepting_sites")], "KRW")
    assert chosen.option is None and "min_accepting_sites" in chosen.reason

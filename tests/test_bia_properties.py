"""Properties of the BIA over random small histories and parameters (hypothesis)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_bia_hand import SEOUL, WEEK, history, tiny_world

from bia.engine import run_bia
from bia.params import BiaParams
from bia.results import BiaResult, LossPoint

MONDAY = datetime(2025, 3, 3, tzinfo=SEOUL)
EPS = 1e-6

order_lines = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),  # site
        st.integers(0, 7 * 24 * 60 - 1),  # minute of the week
        st.sampled_from(["web", "app", "market"]),
        st.sampled_from(["c1", "c2", "c3", "c4", "c5"]),
        st.sampled_from(["north", "south"]),
        st.lists(
            st.tuples(st.sampled_from(["S1", "S2", "S3", "S4"]), st.integers(1, 4)), min_size=1, max_size=3
        ),
    ),
    min_size=1,
    max_size=25,
)
PRICES = {"S1": 100.0, "S2": 50.0, "S3": 20.0, "S4": 10.0}

params_strategy = st.builds(
    BiaParams,
    gross_margin=st.floats(0, 1),
    late_order_cost=st.floats(0, 10_000),
    churn_probability=st.floats(0, 1),
    customer_lifetime_value=st.floats(0, 100_000),
    cancel_probability=st.floats(0, 1),
    promise_slack_hours=st.floats(0, 6),
    loss_tolerance=st.floats(0, 50_000),
    coverage_hours=st.floats(1, 200),
    transit_cost_per_km=st.floats(0, 50),
    period_start=st.just(WEEK["period_start"]),
    period_end=st.just(WEEK["period_end"]),
)
world_strategy = st.integers(0, 12).map(lambda capacity: tiny_world(b_capacity=max(capacity, 1)))


def build(orders: list[tuple[str, int, str, str, str, list[tuple[str, int]]]]) -> list[tuple]:
    rows = []
    for n, (site, minute, channel, customer, region, lines) in enumerate(orders):
        placed = MONDAY + timedelta(minutes=minute)
        for sku, qty in lines:
            rows.append((f"O{n}", placed, channel, customer, region, site, sku, qty, PRICES[sku]))
    return rows


def analyse(orders: list, params: BiaParams, world=None) -> BiaResult:  # type: ignore[no-untyped-def]
    return run_bia(history(build(orders)), world or tiny_world(), params, now=MONDAY)


def subjects(result: BiaResult) -> list[tuple[str, tuple[LossPoint, ...]]]:
    return [(s.code, s.losses) for s in result.sites] + [(i.code, i.losses) for i in result.integrations]


SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(orders=order_lines, params=params_strategy, world=world_strategy)
def test_loss_grows_with_outage_duration(orders: list, params: BiaParams, world) -> None:  # type: ignore[no-untyped-def]
    result = analyse(orders, params, world)
    for code, losses in subjects(result):
        for failover in (False, True):
            curve = sorted((p for p in losses if p.failover == failover), key=lambda p: p.duration_hours)
            for shorter, longer in itertools.pairwise(curve):
                assert longer.total >= shorter.total - EPS, (code, failover, shorter, longer)
                assert longer.worst_start_total >= shorter.worst_start_total - EPS, (code, failover)


@SETTINGS
@given(orders=order_lines, params=params_strategy, world=world_strategy)
def test_failover_never_increases_loss(orders: list, params: BiaParams, world) -> None:  # type: ignore[no-untyped-def]
    result = analyse(orders, params, world)
    for code, losses in subjects(result):
        for duration in params.loss_durations_hours:
            without = next(p for p in losses if p.duration_hours == duration and not p.failover)
            with_failover = next(p for p in losses if p.duration_hours == duration and p.failover)
            assert with_failover.total <= without.total + EPS, (code, duration)
            assert with_failover.worst_start_total <= without.worst_start_total + EPS, (code, duration)


@SETTINGS
@given(orders=order_lines, params=params_strategy, world=world_strategy)
def test_absorbable_share_is_within_zero_and_one(orders: list, params: BiaParams, world) -> None:  # type: ignore[no-untyped-def]
    result = analyse(orders, params, world)
    for site in result.sites:
        assert 0.0 <= site.absorbable_share <= 1.0
        assert 0.0 <= site.stock_share <= 1.0
        assert site.absorbable_share <= site.stock_share + EPS  # capacity can only take away
    for integration in result.integrations:
        assert 0.0 <= integration.absorbable_share <= 1.0
    for route in result.failover_routes:
        assert 0.0 <= route.share_of_region <= 1.0 + EPS


@SETTINGS
@given(orders=order_lines, params=params_strategy)
def test_a_site_with_no_demand_has_zero_impact(orders: list, params: BiaParams) -> None:
    only_a = [("a", *rest) for _, *rest in orders]
    b = analyse(only_a, params).site("b")
    assert b.demand.orders == 0
    assert b.demand.revenue_per_hour.mean == 0
    assert b.demand.orders_per_hour.peak == 0
    for point in b.losses:
        assert point.total == 0
        assert point.worst_start_total == 0
        assert point.revenue_at_risk == 0
        assert point.orders_affected == 0
    assert b.rto_hours == max(params.rto_candidates_hours)
    assert b.tier == 3 or max(params.rto_candidates_hours) <= params.tier2_max_rto_hours
    assert b.rpo_seconds == max(params.rpo_candidates_seconds)


def test_params_reject_out_of_range_probabilities() -> None:
    for name in ("gross_margin", "churn_probability", "cancel_probability"):
        with pytest.raises(Exception, match=name):
            BiaParams(**{name: -0.1})  # type: ignore[arg-type]

"""BIA figures checked against a week of six hand-written orders whose answers are worked out here.

The world: site A (capacity 10/h) in region north, site B (capacity 4/h) in region south, each the
other's backup, 1 degree of latitude (111.195 km) apart, each at its region's centroid.
Every expected number below is arithmetic on the orders in `hand_history`, not a call into bia.
"""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from bia.engine import run_bia
from bia.inventory import Shortfall, preposition_plan
from bia.params import BiaParams
from bia.results import BiaResult, site_targets
from control_plane.domain import (
    GeoPoint,
    Integration,
    IntegrationKind,
    InvalidInput,
    Region,
    Site,
    Sku,
    World,
)

SEOUL = ZoneInfo("Asia/Seoul")
KM_PER_DEGREE = 6371.0088 * math.pi / 180  # 111.195 km between A and B
URL = "http://127.0.0.1:1"
WEEK = {"period_start": datetime(2025, 3, 3, tzinfo=SEOUL), "period_end": datetime(2025, 3, 10, tzinfo=SEOUL)}


def tiny_world(b_capacity: int = 4) -> World:
    """Two sites backing each other up, four SKUs, two payment providers, a carrier and a marketplace."""
    north, south = GeoPoint(37.0, 127.0), GeoPoint(36.0, 127.0)
    return World(
        name="tiny",
        regions=(Region("north", "North", north, 0.6), Region("south", "South", south, 0.4)),
        sites=(
            Site("a", "Site A", "north", north, 10, Decimal(3000), 2.0, URL, ("b",), ("carrier-x",)),
            Site("b", "Site B", "south", south, b_capacity, Decimal(3500), 3.0, URL, ("a",)),
        ),
        integrations=(
            Integration("pay", "Pay", IntegrationKind.PAYMENT, "http://127.0.0.1:3", ("all",), "pay2"),
            Integration("pay2", "Pay 2", IntegrationKind.PAYMENT, "http://127.0.0.1:4", ("all",), "pay"),
            Integration("carrier-x", "Carrier X", IntegrationKind.CARRIER, "http://127.0.0.1:5", ("a",)),
            Integration("mkt", "Market", IntegrationKind.MARKETPLACE, "http://127.0.0.1:6", ("market",)),
        ),
        catalog=(
            Sku("S1", "one", Decimal(100)),
            Sku("S2", "two", Decimal(50)),
            Sku("S3", "three", Decimal(20)),
            Sku("S4", "four", Decimal(10)),
        ),
        stock={
            ("a", "S1"): 100, ("a", "S2"): 100, ("a", "S3"): 100, ("a", "S4"): 5,
            ("b", "S1"): 2, ("b", "S2"): 0, ("b", "S3"): 50,
        },
    )  # fmt: skip


def history(rows: list[tuple[str, datetime, str, str, str, str, str, int, float]]) -> pl.DataFrame:
    """Rows of (order_id, placed_at, channel, customer, region, site, sku, qty, unit_price)."""
    return pl.DataFrame(
        {
            "order_id": [r[0] for r in rows],
            "placed_at": [r[1] for r in rows],
            "channel": [r[2] for r in rows],
            "customer_id": [r[3] for r in rows],
            "region": [r[4] for r in rows],
            "postal_code": ["01000"] * len(rows),
            "site": [r[5] for r in rows],
            "sku": [r[6] for r in rows],
            "qty": [r[7] for r in rows],
            "unit_price": [r[8] for r in rows],
        },
        schema_overrides={"placed_at": pl.Datetime("us", "Asia/Seoul")},
    )


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """A local time in the week of Monday 2025-03-03 (day 0 = Monday)."""
    return datetime(2025, 3, 3 + day, hour, minute, tzinfo=SEOUL)


def hand_history() -> pl.DataFrame:
    return history(
        [
            # site A: three orders in the Monday 10:00 hour (customer c1 twice), one on Tuesday 18:00
            ("O1", at(0, 10, 15), "web", "c1", "north", "a", "S1", 2, 100.0),  # 200
            ("O1", at(0, 10, 15), "web", "c1", "north", "a", "S3", 1, 20.0),  # 20
            ("O2", at(0, 10, 40), "app", "c2", "north", "a", "S2", 1, 50.0),  # 50
            ("O3", at(0, 10, 55), "web", "c1", "north", "a", "S4", 1, 10.0),  # 10
            ("O4", at(1, 18, 5), "market", "c3", "south", "a", "S1", 1, 100.0),  # 100
            # site B: Monday 10:20 and Wednesday 09:00
            ("O5", at(0, 10, 20), "app", "c4", "south", "b", "S3", 3, 20.0),  # 60
            ("O6", at(2, 9, 0), "web", "c5", "south", "b", "S3", 1, 20.0),  # 20
        ]
    )


def run(world: World | None = None, **overrides: object) -> BiaResult:
    params = BiaParams(**{"coverage_hours": 168.0, **WEEK, **overrides})  # type: ignore[arg-type]
    return run_bia(hand_history(), world or tiny_world(), params, now=datetime(2025, 3, 10, tzinfo=SEOUL))


# --- demand -----------------------------------------------------------------------------------------


def test_orders_revenue_and_customers_per_hour_match_hand_counts() -> None:
    a = run().site("a").demand
    # 4 orders, 380 revenue over the 168 hours of the week
    assert a.orders == 4
    assert a.orders_per_hour.mean == pytest.approx(4 / 168)
    assert a.revenue_per_hour.mean == pytest.approx((200 + 20 + 50 + 10 + 100) / 168)
    # the busiest hour is Monday 10:00: O1, O2, O3 = 3 orders, 280 revenue, 2 distinct customers (c1, c2)
    assert a.orders_per_hour.peak == 3
    assert a.revenue_per_hour.peak == pytest.approx(280)
    assert a.customers_per_hour.peak == 2
    # customer-hours: 2 on Monday 10:00 + 1 on Tuesday 18:00
    assert a.customers_per_hour.mean == pytest.approx(3 / 168)
    # hour of week: Monday 10:00 is 10, Tuesday 18:00 is 24 + 18 = 42; each occurs once in the week
    assert a.orders_per_hour.by_hour_of_week[10] == 3
    assert a.orders_per_hour.by_hour_of_week[42] == 1
    assert sum(a.orders_per_hour.by_hour_of_week) == 4


def test_integration_demand_follows_its_scope() -> None:
    result = run()
    # "pay" has scope all: six orders; Monday 10:00 brings O1, O2, O3, O5 from c1, c2, c4
    pay = result.integration("pay").demand
    assert pay.orders_per_hour.mean == pytest.approx(6 / 168)
    assert pay.orders_per_hour.by_hour_of_week[10] == 4
    assert pay.customers_per_hour.by_hour_of_week[10] == 3
    # "carrier-x" is used by site A only (A depends on it): A's four orders
    assert result.integration("carrier-x").demand.orders == 4
    # the marketplace scope names the channel "market": O4 only, revenue 100
    assert result.integration("mkt").demand.orders == 1
    assert result.integration("mkt").demand.revenue == pytest.approx(100)


def test_period_defaults_to_the_hours_the_orders_span() -> None:
    result = run_bia(hand_history(), tiny_world(), BiaParams(), now=datetime(2025, 3, 10, tzinfo=SEOUL))
    # first order Monday 10:15, last Wednesday 09:00: Monday 10:00 to Wednesday 10:00 = 48 hours
    assert result.period_start == at(0, 10)
    assert result.period_hours == 48
    assert result.site("a").demand.orders_per_hour.mean == pytest.approx(4 / 48)


# --- revenue at risk and loss -------------------------------------------------------------------------


def test_revenue_at_risk_is_revenue_per_hour_times_duration() -> None:
    a = run().site("a")
    # averaged over every start hour of the week, an outage of D hours catches D hours of mean revenue
    assert a.loss(1.0, False).revenue_at_risk == pytest.approx(380 / 168)
    assert a.loss(24.0, False).revenue_at_risk == pytest.approx(24 * 380 / 168)
    assert a.loss(24.0, False).orders_affected == pytest.approx(24 * 4 / 168)


LOSS_PARAMS = {
    "late_order_cost": 1000.0,
    "gross_margin": 0.5,
    "cancel_probability": 0.2,  # lost margin = 0.5 * 0.2 = 0.1 of a late order's revenue
    "churn_probability": 0.1,
    "customer_lifetime_value": 10_000.0,  # churn = 0.1 * 10,000 = 1,000 per late customer
    "promise_slack_hours": 1.0,
    "rto_candidates_hours": (0.5, 1.0, 2.0, 4.0, 8.0, 24.0, 48.0),
}
# Cost if every order of an hour is late:
#   Monday 10:00 (3 orders, 280 revenue, 2 customers) = 3*1000 + 0.1*280 + 2*1000 = 5,028
#   Tuesday 18:00 (1 order, 100 revenue, 1 customer)  = 1000 + 0.1*100 + 1000     = 2,010
MONDAY_10, TUESDAY_18 = 5028.0, 2010.0


def test_worst_start_loss_without_failover_by_hand() -> None:
    a = run(**LOSS_PARAMS).site("a")
    # orders placed in the last hour (the slack) still ship on time: late window = D - 1
    assert a.loss(1.0, False).worst_start_total == 0
    assert a.loss(2.0, False).worst_start_total == pytest.approx(MONDAY_10)  # Monday 10:00 in a 1 h window
    assert a.loss(2.0, False).worst_start_hour_of_week == 10
    assert a.loss(24.0, False).worst_start_total == pytest.approx(
        MONDAY_10
    )  # 23 h: Tuesday 18:00 is 32 h later
    assert a.loss(48.0, False).worst_start_total == pytest.approx(MONDAY_10 + TUESDAY_18)  # 47 h covers both
    # expected over start hours: a window of 1 late hour averages to the mean hourly cost
    assert a.loss(2.0, False).total == pytest.approx((MONDAY_10 + TUESDAY_18) / 168)


@pytest.mark.parametrize(
    ("tolerance", "rto", "tier"),
    [
        (5_000.0, 1.0, 1),  # 2 h already costs 5,028 > 5,000: RTO 1 h, tier 1 (<= 4 h)
        (6_000.0, 24.0, 2),  # 2..24 h cost 5,028; 48 h costs 7,038 > 6,000: RTO 24 h, tier 2
        (8_000.0, 48.0, 3),  # every candidate fits: RTO 48 h, tier 3
    ],
)
def test_rto_and_tier_from_loss_tolerance(tolerance: float, rto: float, tier: int) -> None:
    a = run(**LOSS_PARAMS, loss_tolerance=tolerance).site("a")
    assert (a.rto_hours, a.tier) == (rto, tier)


def test_rpo_from_the_peak_hour() -> None:
    result = run(rpo_max_orders_lost=1.0, rpo_candidates_seconds=(0, 60, 300, 900, 3600))
    # A peaks at 3 orders/h: 1 order is lost in 1200 s, so the longest candidate is 900 s
    assert result.site("a").rpo_seconds == 900
    # B peaks at 1 order/h: 3600 s loses exactly 1 order
    assert result.site("b").rpo_seconds == 3600


# --- backups: stock, capacity, failover map -------------------------------------------------------------


def test_absorbable_share_by_hand() -> None:
    # Coverage horizon = the whole week, so "needed" = units sold in the week.
    # B's spare: S1 2, S2 0, S3 50 - 4 (its own 4 units) = 46, S4 not stocked.
    # A needs S1 3 (ratio 2/3), S2 1 (0), S3 1 (1), S4 1 (0).
    # Orders' smallest ratio: O1 (S1, S3) 2/3, O2 (S2) 0, O3 (S4) 0, O4 (S1) 2/3 -> 4/3 of 4 orders.
    # B's spare capacity (4/h minus its own load: 1 order at Monday 10:00) takes all of it.
    a = run().site("a")
    assert a.stock_share == pytest.approx((2 / 3 + 2 / 3) / 4)
    assert a.absorbable_share == pytest.approx((2 / 3 + 2 / 3) / 4)
    # A has the stock (S3: 100 - 1 for itself) and spare capacity for all of B's orders
    assert run().site("b").absorbable_share == pytest.approx(1.0)


def test_absorbable_share_limited_by_backup_capacity() -> None:
    # B with capacity 1/h is full on Monday 10:00 (its own O5): only O4's 2/3 on Tuesday gets through
    a = run(tiny_world(b_capacity=1)).site("a")
    assert a.absorbable_share == pytest.approx((2 / 3) / 4)
    assert a.capacity_runs_out_at == "b"


def test_failover_map_routes_and_extra_transit_by_hand() -> None:
    result = run(promise_slack_hours=1.0)
    routes = {(r.region, r.backup): r for r in result.failover_routes if r.site == "a"}
    north = routes[("north", "b")]
    # north from B instead of A: handling 3 h vs 2 h, plus 111.195 km at 60 km/h
    assert north.extra_transit_hours == pytest.approx(1 + KM_PER_DEGREE / 60)
    # cost: 3,500 vs 3,000 per order, plus 111.195 km at 10 per km
    assert north.extra_cost_per_order == pytest.approx(500 + 10 * KM_PER_DEGREE)
    assert north.late  # 2.85 h extra > 1 h slack
    # north sends O1 (2/3 stocked) of its 3 orders; the rest waits
    assert north.share_of_region == pytest.approx((2 / 3) / 3)
    assert routes[("north", None)].share_of_region == pytest.approx(1 - (2 / 3) / 3)
    # south is closer to B than to A: B is faster, not late
    south = routes[("south", "b")]
    assert south.extra_transit_hours == pytest.approx(1 - KM_PER_DEGREE / 60)
    assert not south.late


# --- critical inventory ------------------------------------------------------------------------------------


def test_pareto_cut_off_by_hand() -> None:
    result = run()
    # revenue: S1 200+100 = 300, S3 20+60+20 = 100, S2 50, S4 10; total 460
    # share before each: S1 0 -> A, S3 300/460 = 0.65 -> A, S2 400/460 = 0.87 -> B, S4 450/460 = 0.98 -> C
    classes = {s.sku: s.abc_class for s in result.skus}
    assert classes == {"S1": "A", "S3": "A", "S2": "B", "S4": "C"}
    assert result.pareto.class_a == 2
    assert result.pareto.class_a_share_of_revenue == pytest.approx(400 / 460)
    assert [s.sku for s in result.skus] == ["S1", "S3", "S2", "S4"]
    # by orders: S3 3, S1 2, S2 1, S4 1 (7 in all): before S2 = 5/7 < 0.8 -> A, before S4 = 6/7 -> B
    assert {s.sku: s.abc_class_by_orders for s in result.skus} == {"S3": "A", "S1": "A", "S2": "A", "S4": "B"}
    assert {s.sku for s in result.skus if s.critical} == {"S1", "S2", "S3"}


def test_preposition_quantities_by_hand() -> None:
    # A's own classes: revenue S1 300, S2 50, S3 20, S4 10 of 380 -> S1 A, S2 A (300/380 = 0.79), S3 B;
    # orders S1 2, S2 1, S3 1, S4 1 of 5 -> S3 A (3/5 = 0.6 before it). Critical at A: S1, S2, S3.
    # Needed for the week vs B's spare: S1 3 vs 2 -> 1 unit; S2 1 vs 0 -> 1 unit; S3 1 vs 46 -> none.
    plan = {(p.site, p.sku): p for p in run().preposition}
    assert set(plan) == {("a", "S1"), ("a", "S2")}
    assert (
        plan[("a", "S1")].units_needed,
        plan[("a", "S1")].backup_spare_units,
        plan[("a", "S1")].quantity,
    ) == (
        3,
        2,
        1,
    )
    assert (plan[("a", "S2")].backup, plan[("a", "S2")].quantity) == ("b", 1)


def test_preposition_splits_a_shortfall_by_backup_share() -> None:
    # 10 units, backups taking 2:1 of the site's orders: 6.67 / 3.33 -> 6 + 3, the last unit to x (rest .67)
    world = World(
        name="three",
        regions=(Region("r", "R", GeoPoint(0, 0), 1.0),),
        sites=tuple(
            Site(code, code, "r", GeoPoint(0, 0), 10, Decimal(1), 1.0, "http://127.0.0.1:1", backups)
            for code, backups in (("s", ("x", "y")), ("x", ()), ("y", ()))
        ),
        integrations=(),
        catalog=(Sku("K", "k", Decimal(1)),),
        stock={},
    )
    gap = Shortfall(
        site="s", sku="K", site_abc_class="A", demand_per_hour=1.0, units_needed=10, backup_spare_units=0
    )
    plan = preposition_plan([gap], {"s": {"x": 2.0, "y": 1.0}}, world)
    assert {p.backup: p.quantity for p in plan} == {"x": 7, "y": 3}


def test_single_points_of_failure_are_skus_stocked_at_one_site() -> None:
    # S2 (B holds 0) and S4 (B has none) are only at A; heaviest revenue first: S2 50, S4 10
    spofs = run().spofs
    assert [(s.sku, s.site) for s in spofs] == [("S2", "a"), ("S4", "a")]
    assert spofs[0].revenue_per_hour == pytest.approx(50 / 168)


def test_integration_absorbable_share_is_what_the_fallback_serves() -> None:
    result = run()
    assert result.integration("pay").absorbable_share == pytest.approx(1.0)  # pay2 serves every order
    assert result.integration("carrier-x").absorbable_share == 0.0  # no fallback


# --- what the control plane reads -----------------------------------------------------------------------


def test_site_targets_read_from_result_and_from_its_json() -> None:
    result = run(**LOSS_PARAMS, loss_tolerance=6_000.0)
    from_result = site_targets(result)
    from_json = site_targets(result.to_json_dict())
    assert from_result == from_json
    a = from_result["a"]
    assert (a.tier, a.rto_hours) == (2, 24.0)
    assert a.expected_orders_per_hour == pytest.approx(4 / 168)
    assert a.expected_orders_at(at(0, 10, 30)) == 3  # Monday 10:30 local
    assert a.expected_orders_at(datetime(2025, 3, 3, 1, 30, tzinfo=ZoneInfo("UTC"))) == 3  # = 10:30 in Seoul


# --- bad input ---------------------------------------------------------------------------------------------


def test_unknown_site_in_history_is_invalid_input() -> None:
    frame = hand_history().with_columns(site=pl.lit("nowhere"))
    with pytest.raises(InvalidInput, match="unknown site"):
        run_bia(frame, tiny_world(), BiaParams())


def test_missing_column_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="missing column"):
        run_bia(hand_history().drop("sku"), tiny_world(), BiaParams())


def test_bad_parameter_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="gross_margin"):
        BiaParams(gross_margin=1.5)

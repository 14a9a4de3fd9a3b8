"""The failover plan: every in-flight order of the failed site goes to a feasible target or is held."""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control_plane.domain import (
    BreakerState,
    GeoPoint,
    Health,
    InvalidInput,
    OrderLine,
    OrderStatus,
    ShipTo,
    SiteState,
)
from failover.eta import EtaModel
from failover.plan import FailoverPlan, InFlightOrder, plan_failover
from failover.routing import exclusion_reason
from failover.safety import serves, spare_capacity

from factories import NOW, SEOUL, site, state

MODEL = EtaModel()
ICHEON = site("icheon", 37.27, 127.44)
DAEJEON = site("daejeon", 36.35, 127.38)
BUSAN = site("busan", 35.18, 129.08)
GWANGJU = site("gwangju", 35.16, 126.85)
ALL = (ICHEON, DAEJEON, BUSAN, GWANGJU)
PLENTY = {(s.code, "SKU-1"): 1000 for s in ALL}


def inflight(
    order_id: str,
    at: str = "icheon",
    lines: tuple[tuple[str, int], ...] = (("SKU-1", 1),),
    dest: GeoPoint = SEOUL,
    promise_hours: float = 48,
    status: OrderStatus = OrderStatus.ACCEPTED,
    avoid: Collection[str] = (),
) -> InFlightOrder:
    return InFlightOrder(
        order_id=order_id,
        site=at,
        ship_to=ShipTo("capital", "06236", dest.lat, dest.lon),
        lines=tuple(OrderLine(sku, qty, Decimal(1000)) for sku, qty in lines),
        promised_by=NOW + timedelta(hours=promise_hours),
        status=status,
        avoid=frozenset(avoid),
    )


def world(**overrides: SiteState) -> list[SiteState]:
    base = {s.code: state(s) for s in ALL}
    base.update(overrides)
    return list(base.values())


def plan(
    orders: list[InFlightOrder],
    sites: list[SiteState] | None = None,
    stock: dict[tuple[str, str], int] | None = None,
    targets: Collection[str] | None = None,
    failed: str = "icheon",
) -> FailoverPlan:
    return plan_failover(
        failed, orders, sites or world(), PLENTY if stock is None else stock, targets, MODEL, NOW
    )


def test_plan_moves_every_in_flight_order_of_the_failed_site() -> None:
    orders = [inflight("o1"), inflight("o2", status=OrderStatus.ROUTED), inflight("o3")]
    p = plan(orders)
    assert sorted(a.order_id for a in p.assignments) == ["o1", "o2", "o3"]
    assert all(a.to_site not in (None, "icheon") for a in p.assignments)


def test_plan_leaves_out_shipped_held_and_other_sites_orders() -> None:
    orders = [
        inflight("moves"),
        inflight("shipped", status=OrderStatus.SHIPPED),
        inflight("held", status=OrderStatus.HELD),
        inflight("elsewhere", at="busan"),
    ]
    assert [a.order_id for a in plan(orders).assignments] == ["moves"]


def test_plan_sends_orders_only_to_the_named_targets() -> None:
    p = plan([inflight(f"o{i}") for i in range(5)], targets=["gwangju"])
    assert p.per_target == {"gwangju": 5}
    assert [c.site for c in p.capacity] == ["gwangju"]


def test_plan_never_assigns_the_failed_site_even_while_it_still_looks_routable() -> None:
    # the failed site's routing control is switched off by the move itself, after the plan
    p = plan([inflight("o1")], sites=world(), targets=None)
    assert p.assignments[0].to_site != "icheon"


def test_plan_never_assigns_a_site_not_accepting_or_with_an_open_breaker() -> None:
    sites = world(daejeon=state(DAEJEON, accepting=False), busan=state(BUSAN, breaker=BreakerState.OPEN))
    p = plan([inflight(f"o{i}") for i in range(4)], sites=sites)
    assert p.per_target == {"gwangju": 4}


def test_plan_consumes_capacity_across_orders() -> None:
    # Daejeon is nearer Seoul than Busan but has room for two orders this hour
    sites = world(daejeon=state(site("daejeon", 36.35, 127.38, capacity_per_hour=2)))
    p = plan([inflight(f"o{i}") for i in range(3)], sites=sites, targets=["daejeon", "busan"])
    assert [a.to_site for a in p.assignments] == ["daejeon", "daejeon", "busan"]
    daejeon = next(c for c in p.capacity if c.site == "daejeon")
    assert (daejeon.spare_before, daejeon.assigned, daejeon.spare_after) == (2, 2, 0)


def test_plan_consumes_stock_across_orders() -> None:
    # Daejeon holds 5 units: the first order's 3 leave too few for the second
    stock = {**PLENTY, ("daejeon", "SKU-1"): 5}
    orders = [inflight("o1", lines=(("SKU-1", 3),)), inflight("o2", lines=(("SKU-1", 3),))]
    p = plan(orders, stock=stock, targets=["daejeon", "busan"])
    assert [a.to_site for a in p.assignments] == ["daejeon", "busan"]


def test_plan_holds_an_order_no_target_can_take_and_says_why() -> None:
    stock = {**PLENTY, ("gwangju", "SKU-1"): 0}
    p = plan([inflight("o1")], stock=stock, targets=["gwangju"])
    assert p.unplaceable == ("o1",)
    assert p.assignments[0].reason == "no site can take it: gwangju=no_stock:SKU-1"
    assert p.per_target == {}


def test_plan_gives_the_tightest_promise_first_pick() -> None:
    # one slot at Daejeon, the nearer target: the order promised sooner gets it, whatever the input order
    sites = world(daejeon=state(site("daejeon", 36.35, 127.38, capacity_per_hour=1)))
    orders = [inflight("relaxed", promise_hours=72), inflight("urgent", promise_hours=24)]
    p = plan(orders, sites=sites, targets=["daejeon", "busan"])
    assert [a.order_id for a in p.assignments] == ["urgent", "relaxed"]
    assert [a.to_site for a in p.assignments] == ["daejeon", "busan"]


def test_plan_is_the_same_whatever_order_the_orders_come_in() -> None:
    orders = [inflight(f"o{i}", promise_hours=24 + i % 3) for i in range(6)]
    sites = world(daejeon=state(DAEJEON, routed_this_hour=997))
    assert plan(orders, sites=sites) == plan(list(reversed(orders)), sites=sites)


def test_plan_keeps_an_order_away_from_a_site_where_its_cancel_is_pending() -> None:
    p = plan([inflight("o1", avoid={"daejeon"})], targets=["daejeon", "busan"])
    assert p.assignments[0].to_site == "busan"


def test_plan_counts_late_orders_with_a_hand_computed_eta() -> None:
    # dispatch now + 3 h handling + 6 h base + 111.19 km / 60 km/h = 10.85 h to the door
    dc = site("north", 37.0, 127.0, handling_hours=3.0)
    dest = GeoPoint(38.0, 127.0)
    orders = [
        inflight("late", dest=dest, promise_hours=10.8),
        inflight("on-time", dest=dest, promise_hours=10.9),
    ]
    p = plan(orders, sites=[state(ICHEON), state(dc)], stock={("north", "SKU-1"): 10})
    by_id = {a.order_id: a for a in p.assignments}
    assert by_id["late"].eta is not None
    assert (by_id["late"].eta - NOW) / timedelta(hours=1) == pytest.approx(10.853, abs=0.01)
    assert (by_id["late"].late, by_id["on-time"].late) == (True, False)
    assert p.late == 1


def test_plan_sends_one_delay_notice_per_late_order_and_none_for_on_time_ones() -> None:
    orders = [inflight("late", promise_hours=2), inflight("on-time", promise_hours=48)]
    notices = plan(orders).notices
    assert [n.order_id for n in notices] == ["late"]
    assert notices[0].promised_by == NOW + timedelta(hours=2)


def test_plan_reports_spare_capacity_before_and_after_per_target() -> None:
    sites = world(busan=state(BUSAN, routed_this_hour=400), gwangju=state(GWANGJU, health=Health.DOWN))
    p = plan([inflight("o1")], sites=sites, targets=["busan", "gwangju"])
    assert [(c.site, c.spare_before, c.assigned, c.spare_after) for c in p.capacity] == [
        ("busan", 600, 1, 599),
        ("gwangju", 0, 0, 0),
    ]


def test_planning_changes_none_of_its_inputs() -> None:
    sites = world()
    stock = dict(PLENTY)
    orders = [inflight(f"o{i}") for i in range(3)]
    plan(orders, sites=sites, stock=stock)
    assert sites == world()
    assert stock == PLENTY


def test_plan_rejects_targets_that_name_the_failed_site() -> None:
    with pytest.raises(InvalidInput):
        plan([inflight("o1")], targets=["icheon"])


def test_plan_answers_as_json_for_the_dry_run() -> None:
    p = plan([inflight("o1", promise_hours=2), inflight("o2")], targets=["busan"])
    answer = json.loads(json.dumps(p.to_json_dict()))
    assert answer["orders_to_move"] == 2
    assert answer["per_target"] == {"busan": 2}
    assert answer["late"] == 1
    assert answer["unplaceable"] == []
    assert [n["order_id"] for n in answer["notices"]] == ["o1"]
    assert answer["capacity"] == [{"site": "busan", "spare_before": 1000, "assigned": 2, "spare_after": 998}]


# --- properties over random worlds ---

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SKUS = ("SKU-1", "SKU-2")

# most sites serve, so that plans assign orders; some are down, closed, broken or full
site_states = st.builds(
    lambda i, lat, lon, accepting, health, breaker, cap, load: state(
        site(f"s{i}", lat, lon, capacity_per_hour=cap),
        accepting=accepting,
        health=health,
        breaker=breaker,
        routed_this_hour=load,
    ),
    st.integers(0, 50),
    st.floats(33, 39),
    st.floats(124, 131),
    st.sampled_from([True, True, True, False]),
    st.sampled_from([Health.HEALTHY, Health.HEALTHY, Health.DEGRADED, Health.UNKNOWN, Health.DOWN]),
    st.sampled_from([BreakerState.CLOSED, BreakerState.CLOSED, BreakerState.HALF_OPEN, BreakerState.OPEN]),
    st.integers(0, 15),
    st.integers(0, 6),
)
orders_st = st.lists(
    st.builds(
        lambda i, lines, hours, status: inflight(
            f"o{i}", at="s0", lines=lines, promise_hours=hours, status=status
        ),
        st.integers(0, 10_000),
        st.lists(
            st.tuples(st.sampled_from(SKUS), st.integers(1, 3)),
            min_size=1,
            max_size=2,
            unique_by=lambda t: t[0],
        ).map(tuple),
        st.floats(1, 72),
        st.sampled_from([OrderStatus.ROUTED, OrderStatus.ACCEPTED]),
    ),
    max_size=20,
    unique_by=lambda o: o.order_id,
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[SiteState], dict[tuple[str, str], int], list[str] | None]:
    sites = draw(st.lists(site_states, min_size=2, max_size=6, unique_by=lambda s: s.site.code))
    if all(s.site.code != "s0" for s in sites):
        sites[0] = state(site("s0"))
    stock = {(s.site.code, sku): draw(st.integers(0, 20)) for s in sites for sku in SKUS}
    others = [s.site.code for s in sites if s.site.code != "s0"]
    targets = draw(st.none() | st.lists(st.sampled_from(others), min_size=1, unique=True))
    return sites, stock, targets


@SETTINGS
@given(scenarios(), orders_st)
def test_every_planned_order_goes_to_a_feasible_target_or_is_held(
    scenario: tuple[list[SiteState], dict[tuple[str, str], int], list[str] | None],
    orders: list[InFlightOrder],
) -> None:
    sites, stock, targets = scenario
    p = plan_failover("s0", orders, sites, stock, targets, MODEL, NOW)
    by_code = {s.site.code: s for s in sites}
    assert sorted(a.order_id for a in p.assignments) == sorted(o.order_id for o in orders)
    for a in p.assignments:
        if a.to_site is None:
            continue
        assert a.to_site != "s0"
        assert targets is None or a.to_site in targets
        assert serves(by_code[a.to_site])


@SETTINGS
@given(scenarios(), orders_st)
def test_per_target_counts_sum_to_the_assigned_orders(
    scenario: tuple[list[SiteState], dict[tuple[str, str], int], list[str] | None],
    orders: list[InFlightOrder],
) -> None:
    sites, stock, targets = scenario
    p = plan_failover("s0", orders, sites, stock, targets, MODEL, NOW)
    assert sum(p.per_target.values()) == len(p.assignments) - len(p.unplaceable)
    assert sum(c.assigned for c in p.capacity) == sum(p.per_target.values())
    assert p.late == len(p.notices)


@SETTINGS
@given(scenarios(), orders_st)
def test_plan_never_exceeds_a_targets_spare_capacity_or_stock(
    scenario: tuple[list[SiteState], dict[tuple[str, str], int], list[str] | None],
    orders: list[InFlightOrder],
) -> None:
    sites, stock, targets = scenario
    p = plan_failover("s0", orders, sites, stock, targets, MODEL, NOW)
    by_code = {s.site.code: s for s in sites}
    for code, count in p.per_target.items():
        assert count <= spare_capacity(by_code[code])
    lines = {o.order_id: o.lines for o in orders}
    used: dict[tuple[str, str], int] = {}
    for a in p.assignments:
        for line in lines[a.order_id] if a.to_site else ():
            used[(a.to_site, line.sku)] = used.get((a.to_site, line.sku), 0) + line.qty
    assert all(qty <= stock[key] for key, qty in used.items())


@SETTINGS
@given(scenarios(), orders_st)
def test_an_order_is_held_only_when_no_target_could_still_take_it(
    scenario: tuple[list[SiteState], dict[tuple[str, str], int], list[str] | None],
    orders: list[InFlightOrder],
) -> None:
    sites, stock, targets = scenario
    p = plan_failover("s0", orders, sites, stock, targets, MODEL, NOW)
    # what is left after the whole plan; capacity and stock only shrink, so an order that fits
    # somewhere at the end would have fitted when it was planned
    left = dict(stock)
    load = {s.site.code: s.routed_this_hour for s in sites}
    by_order = {o.order_id: o for o in orders}
    for a in p.assignments:
        if a.to_site is not None:
            load[a.to_site] += 1
            for line in by_order[a.order_id].lines:
                left[(a.to_site, line.sku)] -= line.qty
    for order_id in p.unplaceable:
        req = by_order[order_id].as_request(NOW)
        for s in sites:
            if s.site.code == "s0" or (targets is not None and s.site.code not in targets):
                continue
            after = SiteState(s.site, s.accepting, s.health, s.breaker, load[s.site.code], s.impaired)
            assert exclusion_reason(after, req, left) is not None

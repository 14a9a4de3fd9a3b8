"""Routing is pure: feasible sites only, ranked by promise, ETA, cost and load, with reasons."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from control_plane.domain import BreakerState, GeoPoint, Health
from failover.eta import EtaModel
from failover.routing import exclusion_reason, rank_candidates

from factories import NOW, order, site, state

MODEL = EtaModel()
ICHEON = site("icheon", 37.27, 127.44)
BUSAN = site("busan", 35.18, 129.08)
STOCK = {("icheon", "SKU-1"): 10, ("busan", "SKU-1"): 10}


def test_nearest_site_wins_when_all_else_is_equal() -> None:
    decision = rank_candidates(order(), [state(BUSAN), state(ICHEON)], STOCK, NOW, MODEL)
    assert [c.site for c in decision.candidates] == ["icheon", "busan"]


def test_site_without_stock_for_a_line_is_excluded_with_the_sku() -> None:
    decision = rank_candidates(order((("SKU-1", 11),)), [state(ICHEON)], STOCK, NOW, MODEL)
    assert decision.chosen is None
    assert decision.exclusions[0].reason == "no_stock:SKU-1"


def test_each_runtime_condition_excludes_with_its_reason() -> None:
    cases = {
        "not_accepting": state(ICHEON, accepting=False),
        "down": state(ICHEON, health=Health.DOWN),
        "impaired": state(ICHEON, impaired=True),
        "breaker_open": state(ICHEON, breaker=BreakerState.OPEN),
        "over_capacity": state(ICHEON, routed_this_hour=1000),
    }
    for reason, st_ in cases.items():
        assert exclusion_reason(st_, order(), STOCK) == reason


def test_half_open_and_degraded_sites_stay_routable() -> None:
    assert exclusion_reason(state(ICHEON, breaker=BreakerState.HALF_OPEN), order(), STOCK) is None
    assert exclusion_reason(state(ICHEON, health=Health.DEGRADED), order(), STOCK) is None


def test_on_time_site_beats_a_cheaper_late_one() -> None:
    far_cheap = site("busan", 35.18, 129.08, cost_per_order=Decimal(0))
    near_dear = site("icheon", 37.27, 127.44, handling_hours=20, cost_per_order=Decimal(9000))
    # a 16 h promise: Icheon (20 h handling) is late, Busan (3 h + 6 h + ~5.5 h transit) is on time
    decision = rank_candidates(
        order(promise_hours=16), [state(near_dear), state(far_cheap)], STOCK, NOW, MODEL
    )
    assert [(c.site, c.late) for c in decision.candidates] == [("busan", False), ("icheon", True)]


def test_avoided_site_is_excluded() -> None:
    decision = rank_candidates(order(), [state(ICHEON), state(BUSAN)], STOCK, NOW, MODEL, avoid={"icheon"})
    assert [c.site for c in decision.candidates] == ["busan"]
    assert decision.exclusions[0].reason == "avoid"


def test_load_pushes_orders_to_a_less_loaded_site() -> None:
    twin = site("icheon-2", 37.27, 127.44)
    decision = rank_candidates(
        order(),
        [state(ICHEON, routed_this_hour=900), state(twin)],
        {**STOCK, ("icheon-2", "SKU-1"): 10},
        NOW,
        MODEL,
    )
    assert decision.chosen is not None and decision.chosen.site == "icheon-2"


site_states = st.builds(
    lambda i, lat, lon, accepting, health, breaker, load, stock: (
        state(
            site(f"s{i}", lat, lon, capacity_per_hour=100),
            accepting=accepting,
            health=health,
            breaker=breaker,
            routed_this_hour=load,
        ),
        stock,
    ),
    st.integers(0, 1000),
    st.floats(33, 39),
    st.floats(124, 131),
    st.booleans(),
    st.sampled_from(list(Health)),
    st.sampled_from(list(BreakerState)),
    st.integers(0, 150),
    st.integers(0, 5),
)


@given(st.lists(site_states, min_size=1, max_size=8, unique_by=lambda t: t[0].site.code), st.integers(1, 5))
def test_chosen_site_is_always_feasible(sites_and_stock: list, qty: int) -> None:  # type: ignore[type-arg]
    states = [s for s, _ in sites_and_stock]
    stock = {(s.site.code, "SKU-1"): units for s, units in sites_and_stock}
    decision = rank_candidates(order((("SKU-1", qty),)), states, stock, NOW, MODEL)
    by_code = {s.site.code: s for s in states}
    for cand in decision.candidates:
        chosen = by_code[cand.site]
        assert chosen.accepting
        assert chosen.health is not Health.DOWN
        assert chosen.breaker is not BreakerState.OPEN
        assert chosen.routed_this_hour < chosen.site.capacity_per_hour
        assert stock[(cand.site, "SKU-1")] >= qty
    # every site is either a candidate or excluded with a reason, never both, never lost
    assert {c.site for c in decision.candidates} | {e.site for e in decision.exclusions} == set(by_code)
    assert not {c.site for c in decision.candidates} & {e.site for e in decision.exclusions}


@given(st.lists(site_states, min_size=1, max_size=8, unique_by=lambda t: t[0].site.code))
def test_candidates_are_on_time_first_then_by_score(sites_and_stock: list) -> None:  # type: ignore[type-arg]
    states = [s for s, _ in sites_and_stock]
    stock = {(s.site.code, "SKU-1"): 5 for s in states}
    cands = rank_candidates(order(dest=GeoPoint(36, 128)), states, stock, NOW, MODEL).candidates
    keys = [(c.late, c.score) for c in cands]
    assert keys == sorted(keys)


def test_a_ramping_site_takes_about_its_weight_of_orders_and_the_same_ones_every_time() -> None:
    from dataclasses import replace as with_

    ramping = state(ICHEON, ramp_weight=0.1)
    orders = [with_(order(), external_id=f"ext-{i}") for i in range(2000)]
    taken = [exclusion_reason(ramping, o, STOCK) is None for o in orders]
    assert 0.07 < sum(taken) / len(orders) < 0.13
    assert taken == [exclusion_reason(ramping, o, STOCK) is None for o in orders]
    assert {exclusion_reason(ramping, o, STOCK) for o, ok in zip(orders, taken, strict=True) if not ok} == {
        "ramping"
    }
    assert all(exclusion_reason(state(ICHEON, ramp_weight=1.0), o, STOCK) is None for o in orders[:50])

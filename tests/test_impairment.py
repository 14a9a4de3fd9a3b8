"""Integration outages impair the sites and channels left without a usable alternative (sample world)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from control_plane.domain import Health, Integration, IntegrationKind
from control_plane.world.loader import load_world_file
from failover.eta import EtaModel
from failover.impairment import (
    channels_of,
    impaired_channels,
    impaired_sites,
    mark_impaired,
    sites_impaired_by,
)
from failover.routing import rank_candidates

from factories import NOW, order, site, state

WORLD, _ = load_world_file(Path(__file__).resolve().parents[1] / "examples/kr-retail/world.yaml")
SITES, INTEGRATIONS = WORLD.sites, WORLD.integrations
ALL_UP = {i.code: Health.HEALTHY for i in INTEGRATIONS}


def down(*codes: str) -> dict[str, Health]:
    return {**ALL_UP, **dict.fromkeys(codes, Health.DOWN)}


def integration(
    code: str, kind: IntegrationKind, scope: tuple[str, ...], fallback: str | None = None
) -> Integration:
    return Integration(code, code.title(), kind, f"http://127.0.0.1:1/{code}", scope, fallback)


def test_nothing_is_impaired_when_every_integration_is_up() -> None:
    assert impaired_sites(SITES, INTEGRATIONS, ALL_UP) == {}
    assert impaired_channels(SITES, INTEGRATIONS, ALL_UP) == {}


def test_cj_down_with_hanjin_up_impairs_only_the_sites_that_ship_with_cj_alone() -> None:
    assert sorted(impaired_sites(SITES, INTEGRATIONS, down("cj-logistics"))) == ["gwangju", "seoul-mfc"]


def test_the_reason_names_the_outage_and_why_the_fallback_does_not_help() -> None:
    reasons = impaired_sites(SITES, INTEGRATIONS, down("cj-logistics"))["gwangju"]
    assert reasons == [
        "carrier cj-logistics is down and no alternative is usable (hanjin does not serve gwangju)"
    ]


def test_hanjin_down_impairs_nothing_because_every_hanjin_site_also_ships_with_cj() -> None:
    assert impaired_sites(SITES, INTEGRATIONS, down("hanjin")) == {}


def test_both_carriers_down_impairs_every_site() -> None:
    impaired = impaired_sites(SITES, INTEGRATIONS, down("cj-logistics", "hanjin"))
    assert sorted(impaired) == sorted(s.code for s in SITES)


def test_an_integration_without_fallback_impairs_every_site_that_depends_on_it() -> None:
    impaired = impaired_sites(SITES, INTEGRATIONS, down("erp"))
    assert sorted(impaired) == sorted(s.code for s in SITES)
    assert impaired["icheon"] == ["erp erp is down and has no fallback"]


def test_unknown_or_degraded_integrations_do_not_impair() -> None:
    health = {**ALL_UP, "erp": Health.UNKNOWN, "cj-logistics": Health.DEGRADED}
    assert impaired_sites(SITES, INTEGRATIONS, health) == {}
    assert impaired_sites(SITES, INTEGRATIONS, {}) == {}


def test_a_payment_or_notification_outage_does_not_stop_dcs_from_shipping() -> None:
    health = down("toss-payments", "kakaopay", "aws-ses", "aws-sns")
    assert impaired_sites(SITES, INTEGRATIONS, health) == {}


def test_a_marketplace_outage_impairs_its_channel_only() -> None:
    assert channels_of(SITES, INTEGRATIONS) == ["coupang", "naver"]
    impaired = impaired_channels(SITES, INTEGRATIONS, down("coupang"))
    assert impaired == {"coupang": ["marketplace coupang is down and has no fallback"]}
    assert impaired_sites(SITES, INTEGRATIONS, down("coupang")) == {}


def test_the_fallback_chain_is_followed_past_a_down_fallback() -> None:
    dc = site("dc", depends_on=("a",))
    chain = [
        integration("a", IntegrationKind.CARRIER, ("dc",), fallback="b"),
        integration("b", IntegrationKind.CARRIER, ("all",), fallback="c"),
        integration("c", IntegrationKind.CARRIER, ("all",), fallback="a"),
    ]
    assert impaired_sites([dc], chain, {"a": Health.DOWN, "b": Health.DOWN}) == {}
    assert "dc" in impaired_sites([dc], chain, dict.fromkeys("abc", Health.DOWN))


def test_another_dependency_of_the_same_kind_counts_as_an_alternative() -> None:
    dc = site("dc", depends_on=("x", "y"))
    carriers = [
        integration("x", IntegrationKind.CARRIER, ("dc",)),
        integration("y", IntegrationKind.CARRIER, ("dc",)),
    ]
    assert impaired_sites([dc], carriers, {"x": Health.DOWN}) == {}


def test_a_dependency_of_another_kind_is_not_an_alternative() -> None:
    dc = site("dc", depends_on=("x", "erp"))
    deps = [
        integration("x", IntegrationKind.CARRIER, ("dc",)),
        integration("erp", IntegrationKind.ERP, ("all",)),
    ]
    assert list(impaired_sites([dc], deps, {"x": Health.DOWN})) == ["dc"]


def test_a_scope_naming_a_site_makes_it_a_dependency() -> None:
    dc = site("dc", depends_on=())
    wms = [integration("wms-cloud", IntegrationKind.WMS, ("dc",))]
    assert list(impaired_sites([dc], wms, {"wms-cloud": Health.DOWN})) == ["dc"]


def test_sites_impaired_by_lists_the_sites_each_down_integration_impairs() -> None:
    assert sites_impaired_by(SITES, INTEGRATIONS, down("cj-logistics")) == {
        "cj-logistics": ["gwangju", "seoul-mfc"]
    }


def test_routing_sends_no_order_to_an_impaired_site() -> None:
    # Given Gwangju impaired by the CJ outage and a healthy Busan
    gwangju, busan = site("gwangju", 35.16, 126.85), site("busan", 35.18, 129.08)
    states = mark_impaired([state(gwangju), state(busan)], {"gwangju": ["cj down"]})
    stock = {("gwangju", "SKU-1"): 5, ("busan", "SKU-1"): 5}
    decision = rank_candidates(order(), states, stock, NOW, EtaModel())
    assert [c.site for c in decision.candidates] == ["busan"]
    assert decision.summary() == "gwangju=impaired"


def test_mark_impaired_clears_the_flag_once_the_outage_ends() -> None:
    states = mark_impaired([state(site("gwangju"))], {"gwangju": ["cj down"]})
    assert not mark_impaired(states, {})[0].impaired


codes = [i.code for i in INTEGRATIONS]


@settings(max_examples=100, deadline=None)
@given(st.sets(st.sampled_from(codes)), st.sampled_from(codes))
def test_taking_one_more_integration_down_never_unimpairs_anything(down_now: set[str], extra: str) -> None:
    before = impaired_sites(SITES, INTEGRATIONS, down(*down_now))
    after = impaired_sites(SITES, INTEGRATIONS, down(*down_now, extra))
    assert set(before) <= set(after)
    before_ch = impaired_channels(SITES, INTEGRATIONS, down(*down_now))
    assert set(before_ch) <= set(impaired_channels(SITES, INTEGRATIONS, down(*down_now, extra)))

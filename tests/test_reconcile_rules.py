"""The reconciliation rules (failover.reconcile), pure: which difference is which finding, and that
carrying out a finding's repair leaves an order the rules find nothing wrong with."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from control_plane.domain import OrderStatus
from failover.reconcile import Action, DcStatus, Finding, Holding, Kind, StoreCopy, compare, keeper

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
SITES = ("icheon", "busan", "daejeon")


def held(site: str, status: DcStatus = DcStatus.ACCEPTED, minute: int = 0) -> Holding:
    return Holding(site, f"{site[:3].upper()}-{minute:08d}", status, T0 + timedelta(minutes=minute))


def store(
    status: OrderStatus, site: str | None, owed: tuple[str, ...] = (), settling: bool = False
) -> StoreCopy:
    return StoreCopy(status, site, frozenset(owed), settling)


def test_agreeing_order_is_no_finding() -> None:
    assert compare("o", store(OrderStatus.ACCEPTED, "icheon"), [held("icheon")]) is None
    assert compare("o", store(OrderStatus.ROUTED, "icheon"), [held("icheon")]) is None
    assert compare("o", store(OrderStatus.SHIPPED, "icheon"), [held("icheon", DcStatus.SHIPPED)]) is None
    assert compare("o", store(OrderStatus.HELD, None), []) is None
    assert compare("o", store(OrderStatus.CANCELLED, "icheon"), [held("icheon", DcStatus.CANCELLED)]) is None
    assert compare("o", None, [held("icheon", DcStatus.CANCELLED)]) is None


def test_unknown_order_is_imported_where_it_was_sent_last_and_cancelled_elsewhere() -> None:
    f = compare("o", None, [held("icheon", minute=1), held("busan", minute=5)])
    assert f is not None
    assert (f.kind, f.action) == (Kind.UNKNOWN_TO_STORE, Action.IMPORT)
    assert f.keep is not None and f.keep.site == "busan"
    assert f.cancel_at == ("icheon",)


def test_a_shipped_copy_is_kept_over_a_later_one() -> None:
    copies = [held("icheon", DcStatus.SHIPPED, minute=1), held("busan", minute=9)]
    assert keeper(copies).site == "icheon"
    f = compare("o", None, copies)
    assert f is not None and f.keep is not None and f.keep.site == "icheon" and f.cancel_at == ("busan",)


def test_live_order_missing_at_its_dc_is_dispatched_again() -> None:
    for dc in ([], [held("icheon", DcStatus.CANCELLED)]):
        f = compare("o", store(OrderStatus.ACCEPTED, "icheon"), dc)
        assert f is not None and (f.kind, f.action) == (Kind.MISSING_AT_DC, Action.REDISPATCH)


def test_a_copy_a_pending_cancel_will_reach_is_not_a_finding() -> None:
    copies = [held("icheon"), held("busan")]
    assert compare("o", store(OrderStatus.ACCEPTED, "busan", owed=("icheon",)), copies) is None
    f = compare("o", store(OrderStatus.ACCEPTED, "busan"), copies)
    assert f is not None and (f.kind, f.action, f.cancel_at) == (
        Kind.AT_SEVERAL_DCS,
        Action.CANCEL,
        ("icheon",),
    )


def test_store_follows_the_only_dc_that_holds_it() -> None:
    f = compare("o", store(OrderStatus.ACCEPTED, "icheon"), [held("busan")])
    assert f is not None and (f.kind, f.action) == (Kind.ELSEWHERE, Action.ADOPT)
    assert f.keep is not None and f.keep.site == "busan"


def test_held_and_cancelled_orders_a_dc_holds() -> None:
    f = compare("o", store(OrderStatus.HELD, None), [held("busan")])
    assert f is not None and (f.kind, f.action) == (Kind.HELD_BUT_AT_DC, Action.ADOPT)
    f = compare("o", store(OrderStatus.CANCELLED, "busan"), [held("busan")])
    assert f is not None and (f.kind, f.action, f.cancel_at) == (
        Kind.CANCELLED_BUT_AT_DC,
        Action.CANCEL,
        ("busan",),
    )


def test_shipments_the_store_missed() -> None:
    f = compare("o", store(OrderStatus.ACCEPTED, "icheon"), [held("icheon", DcStatus.SHIPPED)])
    assert f is not None and (f.kind, f.action) == (Kind.SHIPPED_NOT_RECORDED, Action.RECORD_SHIPMENT)
    f = compare("o", store(OrderStatus.SHIPPED, "icheon"), [])
    assert f is not None and (f.kind, f.action) == (Kind.SHIPPED_MISSING_AT_DC, Action.NONE)


def test_two_shipments_are_left_to_an_operator() -> None:
    copies = [held("icheon", DcStatus.SHIPPED), held("busan", DcStatus.SHIPPED, minute=3)]
    f = compare("o", store(OrderStatus.SHIPPED, "icheon"), copies)
    assert f is not None and f.action is Action.NONE and "busan" in f.detail


def test_settling_orders_are_left_to_the_order_path() -> None:
    assert compare("o", store(OrderStatus.ROUTED, "icheon", settling=True), []) is None


# --- the property: a repair, carried out, leaves nothing to repair ---


def apply_repair(
    f: Finding, before: StoreCopy | None, holdings: list[Holding]
) -> tuple[StoreCopy, list[Holding]]:
    """What the service does for each action, on the pure model: the store and each DC's copy."""
    by_site = {h.site: h for h in holdings}
    now = T0 + timedelta(hours=1)
    status: OrderStatus | None = None if before is None else before.status
    site = None if before is None else before.site
    if f.action in (Action.IMPORT, Action.ADOPT):
        assert f.keep is not None
        status = OrderStatus.SHIPPED if f.keep.status is DcStatus.SHIPPED else OrderStatus.ACCEPTED
        site = f.keep.site
    elif f.action is Action.REDISPATCH:
        assert site is not None
        by_site[site] = replace(by_site.get(site, held(site)), status=DcStatus.ACCEPTED, received_at=now)
    elif f.action is Action.RECORD_SHIPMENT:
        assert f.keep is not None and site == f.keep.site
        status = OrderStatus.SHIPPED  # as the DC's own event would
    for cancelled in f.cancel_at:
        by_site[cancelled] = replace(by_site[cancelled], status=DcStatus.CANCELLED)
    assert status is not None
    return StoreCopy(status, site), list(by_site.values())


holdings_strategy = st.lists(
    st.builds(
        held,
        st.sampled_from(SITES),
        st.sampled_from(list(DcStatus)),
        st.integers(min_value=0, max_value=30),
    ),
    max_size=3,
    unique_by=lambda h: h.site,
)
store_strategy = st.one_of(
    st.none(),
    st.builds(
        lambda status, site: StoreCopy(
            status, None if status in (OrderStatus.HELD, OrderStatus.RECEIVED) else site
        ),
        st.sampled_from(list(OrderStatus)),
        st.sampled_from(SITES),
    ),
)


@given(store_strategy, holdings_strategy)
def test_a_repair_leaves_the_order_agreeing(before: StoreCopy | None, holdings: list[Holding]) -> None:
    f = compare("o", before, holdings)
    if f is None or f.action is Action.NONE:
        return
    after, dc = apply_repair(f, before, holdings)
    again = compare("o", after, dc)
    if again is not None:
        # a shipment that cannot be undone (a second one, or one after a cancel) stays an operator's call
        assert again.action is Action.NONE and "shipped" in again.detail, (f, again)
        return
    live = [h for h in dc if h.live]
    if after.status in (OrderStatus.ROUTED, OrderStatus.ACCEPTED, OrderStatus.SHIPPED):
        assert [h.site for h in live] == [after.site]  # exactly one live ledger: the store's
    else:
        assert live == []

"""A failover's batch move: orders to their planned target while it has the units, then to the
fallbacks, else held; stock released and reserved once per batch; cancels owed in the same commit.

The allocation is pure (first part); the batch's one transaction runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select, update

from chaos.order_stream import OrderFactory
from control_plane.context import build_context
from control_plane.domain import OrderLine, OrderStatus
from control_plane.orders import repository as repo
from control_plane.orders.moves import MoveItem, allocate
from control_plane.orders.schemas import OrderIn
from control_plane.settings import Settings
from control_plane.store.tables import DcCancelRow, OrderRow, RouteAttemptRow, StockRow
from failover.plan import Assignment
from failover.routing import Candidate

from harness import engine_for, prepare_database, write_test_world

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def _cand(site: str) -> Candidate:
    return Candidate(site, T0 + timedelta(days=1), False, 0.0)


def _line(sku: str, qty: int) -> OrderLine:
    return OrderLine(sku, qty, Decimal(1))


def test_each_order_takes_its_first_open_candidate_with_every_unit() -> None:
    free = {("b", "x"): 3, ("b", "y"): 0, ("c", "x"): 5, ("c", "y"): 5}
    orders = [
        ([_line("x", 2)], [_cand("b"), _cand("c")]),  # b has 3 x
        ([_line("x", 2)], [_cand("b"), _cand("c")]),  # b has 1 x left: c
        ([_line("x", 1), _line("y", 1)], [_cand("b"), _cand("c")]),  # b has no y: c
        ([_line("x", 1)], [_cand("closed"), _cand("b")]),  # a closed site is passed over
        ([_line("x", 9)], [_cand("b"), _cand("c")]),  # nobody has 9: held
    ]
    picks = allocate(orders, free, open_sites={"b", "c"})
    assert [p.first.site if p.first else None for p in picks] == ["b", "c", "c", "b", None]
    assert [p.lost for p in picks] == [[], ["b"], ["b"], ["closed"], ["b", "c"]]
    assert picks[0].rest == [_cand("c")]
    assert free == {("b", "x"): 0, ("b", "y"): 0, ("c", "x"): 2, ("c", "y"): 4}


@given(
    st.lists(
        st.tuples(
            st.lists(st.tuples(st.sampled_from("xyz"), st.integers(1, 4)), min_size=1, max_size=3),
            st.lists(st.sampled_from("abc"), min_size=0, max_size=3, unique=True),
        ),
        max_size=30,
    ),
    st.dictionaries(st.tuples(st.sampled_from("abc"), st.sampled_from("xyz")), st.integers(0, 10)),
)
def test_allocation_never_reserves_more_than_is_free(
    raw: list[tuple[list[tuple[str, int]], list[str]]], free: dict[tuple[str, str], int]
) -> None:
    orders = [([_line(sku, q) for sku, q in lines], [_cand(s) for s in sites]) for lines, sites in raw]
    left = dict(free)
    picks = allocate(orders, left, open_sites={"a", "b", "c"})
    taken: dict[tuple[str, str], int] = {}
    for (lines, cands), pick in zip(orders, picks, strict=True):
        if pick.first is not None:
            assert pick.first in cands and pick.lost == [c.site for c in cands[: cands.index(pick.first)]]
            for li in lines:
                taken[(pick.first.site, li.sku)] = taken.get((pick.first.site, li.sku), 0) + li.qty
        else:
            assert pick.lost == [c.site for c in cands]
    for key, n in taken.items():
        assert n <= free.get(key, 0)
        assert left[key] == free[key] - n


def test_a_batch_moves_what_fits_holds_the_rest_and_owes_cancels_in_one_commit(
    db_url: str, tmp_path: Path
) -> None:
    world, _ = write_test_world(tmp_path / "world.yaml")
    prepare_database(db_url, world)
    old, target, fallback, sku = "icheon", "daejeon", "busan", "KR-0001"
    now = datetime.now(UTC)
    factory = OrderFactory(world, seed=3)
    engine = engine_for(db_url)
    ctx = build_context(Settings(database_url=db_url), clock=lambda: now)
    try:
        # given four orders of one unit each routed to the old site, one of them shipped meanwhile,
        # room for two at the planned target and none at the fallback
        with ctx.sessions.begin() as s:
            for n in range(4):
                body = factory.order(lines=[{"sku": sku, "qty": 1, "unit_price": "4500"}])
                req = OrderIn.model_validate(body).to_request(now, 48)
                assert repo.reserve(s, old, req.lines)
                repo.insert_order(s, f"o{n}", req, OrderStatus.ROUTED, old, now, now, now)
            s.add(DcCancelRow(order_id="o1", site=old, status="done", reason="earlier", attempts=2,
                              created_at=now, next_attempt_at=now))  # fmt: skip
        with engine.begin() as c:
            c.execute(update(OrderRow).where(OrderRow.id == "o3").values(status=OrderStatus.SHIPPED.value))
            for site, on_hand in ((target, 2), (fallback, 0)):
                c.execute(
                    update(StockRow)
                    .where(StockRow.site == site, StockRow.sku == sku)
                    .values(on_hand=on_hand, reserved=0)
                )
            reserved_before = c.scalar(
                select(StockRow.reserved).where(StockRow.site == old, StockRow.sku == sku)
            )
        plan = [
            MoveItem(
                Assignment(
                    f"o{n}", old, target, now + timedelta(days=1), False, "test", now, (_cand(fallback),)
                ),
                owes_cancel=n in (1, 2),
            )
            for n in range(4)
        ]
        # when one batch moves them (dispatch not run: the DC calls come after the commit)
        moves = ctx.pipeline.move_batch(old, plan)
    finally:
        ctx.close()
    # then two are routed to the target, the third is held, the shipped one was left alone
    assert [(m.order_id, m.gone, m.trace.status, m.trace.site) for m in moves] == [
        ("o0", False, OrderStatus.ROUTED, target),
        ("o1", False, OrderStatus.ROUTED, target),
        ("o2", False, OrderStatus.HELD, None),
        ("o3", True, OrderStatus.RECEIVED, None),
    ]
    assert [m.send is not None for m in moves] == [True, True, False, False]
    with engine.connect() as c:
        rows = {r.id: r for r in c.execute(select(OrderRow))}
        stock = dict(c.execute(select(StockRow.site, StockRow.reserved).where(StockRow.sku == sku)).all())
        cancels = dict(c.execute(select(DcCancelRow.order_id, DcCancelRow.status)).all())
        attempts = [tuple(a) for a in c.execute(
            select(RouteAttemptRow.order_id, RouteAttemptRow.site, RouteAttemptRow.outcome)
            .order_by(RouteAttemptRow.id)
        )]  # fmt: skip
    engine.dispose()
    assert [(rows[i].status, rows[i].site) for i in ("o0", "o1", "o2", "o3")] == [
        ("routed", target), ("routed", target), ("held", None), ("shipped", old),
    ]  # fmt: skip
    assert [rows[i].attempts_count for i in ("o0", "o1", "o2", "o3")] == [1, 1, 1, 0]
    assert rows["o2"].next_attempt_at is not None and rows["o0"].routed_at is not None
    # the old site released the three moved units (the shipped one's stays), the target holds two
    assert stock[old] == reserved_before - 3 and stock[target] == 2 and stock[fallback] == 0
    # the cancels owed (one of them reopened) were written with the move
    assert cancels == {"o1": "pending", "o2": "pending"}
    assert ("o2", target, "no_stock") in attempts and ("o2", fallback, "no_stock") in attempts
    assert ("o2", None, "held") in attempts
    assert sum(1 for a in attempts if a[2] == "moved") == 3

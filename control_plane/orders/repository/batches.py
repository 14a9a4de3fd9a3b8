"""Set-based writes for moving many orders at once (a failover's move): a few statements per batch.

Moving orders one transaction each made every mover thread update the same hot stock rows (a
failed site's SKUs, and its backups'), so the threads waited on each other's row locks; a batch
takes each stock row's lock once, in a fixed order, and writes all of its orders together.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from control_plane.domain import OrderLine, OrderStatus
from control_plane.orders.repository._common import is_postgresql
from control_plane.orders.repository.orders import _INSERT_ATTEMPT, LIVE_AT_DC, ORDERS, Attempt
from control_plane.store.tables import DcCancelRow, OrderLineRow, OrderRow, SiteRow, StockRow

_stock = StockRow.__table__
_cancels = DcCancelRow.__table__


def lock_live_at(session: Session, site: str, order_ids: Sequence[str]) -> list[OrderRow]:
    """The orders of `order_ids` still live at `site`, locked until the end of the transaction
    (in id order, so two batches over the same orders cannot deadlock)."""
    stmt = (
        select(OrderRow)
        .where(OrderRow.id.in_(order_ids), OrderRow.site == site, OrderRow.status.in_(LIVE_AT_DC))
        .order_by(OrderRow.id)
    )
    if is_postgresql(session):
        stmt = stmt.with_for_update()
    return list(session.scalars(stmt))


def lines_of(session: Session, order_ids: Sequence[str]) -> dict[str, list[OrderLine]]:
    out: dict[str, list[OrderLine]] = {i: [] for i in order_ids}
    stmt = (
        select(OrderLineRow.order_id, OrderLineRow.sku, OrderLineRow.qty, OrderLineRow.unit_price)
        .where(OrderLineRow.order_id.in_(order_ids))
        .order_by(OrderLineRow.order_id, OrderLineRow.line_no)
    )
    for order_id, sku, qty, price in session.execute(stmt):
        out[order_id].append(OrderLine(sku, qty, price))
    return out


def open_sites(session: Session, sites: Iterable[str]) -> set[str]:
    """Which of `sites` take orders now, under key-share locks of their rows (see `site_open`)."""
    stmt = select(SiteRow.code).where(SiteRow.code.in_(sorted(set(sites))), SiteRow.accepting.is_(True))
    if is_postgresql(session):
        stmt = stmt.order_by(SiteRow.code).with_for_update(key_share=True)
    return set(session.scalars(stmt))


def lock_free_stock(
    session: Session, sites: Iterable[str], skus: Iterable[str]
) -> dict[tuple[str, str], int]:
    """Free units per (site, sku), the rows locked (in key order) until the end of the transaction,
    so what is reserved from them afterwards needs no guard of its own."""
    site_list, sku_list = sorted(set(sites)), sorted(set(skus))
    if not site_list or not sku_list:
        return {}
    stmt = (
        select(_stock.c.site, _stock.c.sku, _stock.c.on_hand - _stock.c.reserved)
        .where(_stock.c.site.in_(site_list), _stock.c.sku.in_(sku_list))
        .order_by(_stock.c.site, _stock.c.sku)
    )
    if is_postgresql(session):
        stmt = stmt.with_for_update()
    return {(site, sku): int(free) for site, sku, free in session.execute(stmt)}


_ADD_RESERVED = (
    update(_stock)
    .where(_stock.c.site == bindparam("p_site"), _stock.c.sku == bindparam("p_sku"))
    .values(reserved=_stock.c.reserved + bindparam("p_delta"))
)


def change_reserved(session: Session, deltas: Mapping[tuple[str, str], int]) -> None:
    """Add `delta` to each (site, sku)'s reservation (negative: release), in key order."""
    params = [{"p_site": site, "p_sku": sku, "p_delta": d} for (site, sku), d in sorted(deltas.items()) if d]
    if params:
        session.connection().execute(_ADD_RESERVED, params)


_MOVE = update(ORDERS).where(ORDERS.c.id == bindparam("p_id"))
_COUNTED = {"dc_ref": None, "attempts_count": ORDERS.c.attempts_count + 1, "updated_at": bindparam("p_now")}
_ROUTE = _MOVE.values(
    status=OrderStatus.ROUTED.value,
    site=bindparam("p_site"),
    eta=bindparam("p_eta"),
    routed_at=bindparam("p_now"),
    next_attempt_at=bindparam("p_next"),
    **_COUNTED,
)
_HOLD = _MOVE.values(
    status=OrderStatus.HELD.value, site=None, eta=None, next_attempt_at=bindparam("p_next"), **_COUNTED
)


def route_many(
    session: Session,
    routed: Sequence[tuple[str, str, datetime]],
    held: Sequence[tuple[str, datetime]],
    now: datetime,
    lease_until: datetime,
) -> None:
    """Routed (id, site, eta), re-posted after `lease_until`; held (id, next try), with no site.
    Each counts one attempt, as `count_attempt` does."""
    conn = session.connection()
    if routed:
        conn.execute(
            _ROUTE,
            [
                {"p_id": i, "p_site": site, "p_eta": eta, "p_next": lease_until, "p_now": now}
                for i, site, eta in routed
            ],
        )
    if held:
        conn.execute(_HOLD, [{"p_id": i, "p_next": next_try, "p_now": now} for i, next_try in held])


def add_attempts(session: Session, attempts: Sequence[tuple[str, Attempt]]) -> None:
    if attempts:
        session.connection().execute(
            _INSERT_ATTEMPT,
            [
                {"order_id": order_id, "at": a.at, "site": a.site, "outcome": a.outcome,
                 "reason": a.reason[:2000], "latency_ms": a.latency_ms}
                for order_id, a in attempts
            ],
        )  # fmt: skip


_REOPEN_CANCEL = (
    update(_cancels)
    .where(_cancels.c.order_id == bindparam("p_order_id"), _cancels.c.site == bindparam("p_site"))
    .values(status="pending", reason=bindparam("p_reason"), created_at=bindparam("p_now"),
            next_attempt_at=bindparam("p_now"), done_at=None)
)  # fmt: skip


def add_cancels(session: Session, order_ids: Sequence[str], site: str, reason: str, now: datetime) -> None:
    """Owe `site` a cancel of each order (as `add_cancel`, for many): a finished one is reopened."""
    if not order_ids:
        return
    existing = set(
        session.scalars(
            select(DcCancelRow.order_id).where(DcCancelRow.site == site, DcCancelRow.order_id.in_(order_ids))
        )
    )
    conn, reason = session.connection(), reason[:2000]
    reopen = [{"p_order_id": i, "p_site": site, "p_reason": reason, "p_now": now} for i in existing]
    if reopen:
        conn.execute(_REOPEN_CANCEL, reopen)
    new = [
        {"order_id": i, "site": site, "status": "pending", "reason": reason, "attempts": 0,
         "created_at": now, "next_attempt_at": now}
        for i in order_ids if i not in existing
    ]  # fmt: skip
    if new:
        conn.execute(insert(_cancels), new)

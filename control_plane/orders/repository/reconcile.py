"""What reconciliation reads from the store in bulk, and the writes that make an order agree with
the DC that holds it (re-import, adopt), beside the intake's own."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from control_plane.domain import OrderLine, OrderRequest, OrderStatus
from control_plane.orders.repository._common import is_postgresql
from control_plane.orders.repository.orders import LIVE_AT_DC, insert_order
from control_plane.orders.repository.stock import consume_unreserved, release
from control_plane.store.tables import DcCancelRow, OrderRow, StockRow

_CHUNK = 500


@dataclass(frozen=True, slots=True)
class StoreRecord:
    id: str
    status: str
    site: str | None
    next_attempt_at: datetime | None
    updated_at: datetime
    cancels_owed: frozenset[str]


_COLUMNS = (OrderRow.id, OrderRow.status, OrderRow.site, OrderRow.next_attempt_at, OrderRow.updated_at)


def store_records(session: Session, ids: Iterable[str], changed_since: datetime) -> dict[str, StoreRecord]:
    """The orders named in `ids` and every order changed at or after `changed_since`, each with the
    DCs a pending cancel of it will reach; a few queries per 500 orders, columns only."""
    rows: dict[str, tuple[str, str, str | None, datetime | None, datetime]] = {}
    for r in session.execute(select(*_COLUMNS).where(OrderRow.updated_at >= changed_since)):
        rows[r[0]] = tuple(r)  # type: ignore[assignment]
    wanted = sorted(set(ids) - rows.keys())
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        for r in session.execute(select(*_COLUMNS).where(OrderRow.id.in_(chunk))):
            rows[r[0]] = tuple(r)  # type: ignore[assignment]
    owed: dict[str, set[str]] = {}
    known = sorted(rows)
    for start in range(0, len(known), _CHUNK):
        chunk = known[start : start + _CHUNK]
        stmt = select(DcCancelRow.order_id, DcCancelRow.site).where(
            DcCancelRow.order_id.in_(chunk), DcCancelRow.status == "pending"
        )
        for order_id, site in session.execute(stmt):
            owed.setdefault(order_id, set()).add(site)
    return {
        oid: StoreRecord(oid, status, site, nxt, updated, frozenset(owed.get(oid, ())))
        for oid, (_, status, site, nxt, updated) in rows.items()
    }


def reserve_held_by_dc(session: Session, site: str, lines: Sequence[OrderLine]) -> dict[str, int]:
    """Reserve an order's lines at a DC that holds the order already, never refusing: where the
    store counts fewer free units than that, its count is stale (the DC had the units to take the
    order), so `on_hand` is raised by the shortfall. Returns the raise per SKU."""
    wanted: dict[str, int] = {}
    for line in lines:
        wanted[line.sku] = wanted.get(line.sku, 0) + line.qty
    raised: dict[str, int] = {}
    for sku in sorted(wanted):  # SKU order, as intake locks them: no deadlock with it
        qty = wanted[sku]
        row = session.get(StockRow, (site, sku), with_for_update=is_postgresql(session))
        if row is None:
            session.add(StockRow(site=site, sku=sku, on_hand=qty, reserved=qty))
            raised[sku] = qty
            continue
        short = row.reserved + qty - row.on_hand
        if short > 0:
            row.on_hand += short
            raised[sku] = short
        row.reserved += qty
    session.flush()
    return raised


def import_order(
    session: Session,
    order_id: str,
    req: OrderRequest,
    site: str,
    dc_ref: str,
    shipped: bool,
    now: datetime,
) -> dict[str, int]:
    """Store an order a DC holds and the store lost, as that DC holds it (accepted or shipped), with
    its stock: reserved while accepted, gone from the shelf once shipped. Returns stock raised."""
    status = OrderStatus.SHIPPED if shipped else OrderStatus.ACCEPTED
    insert_order(session, order_id, req, status, site, None, now, None)
    row = session.get(OrderRow, order_id)
    assert row is not None
    row.dc_ref = dc_ref
    if shipped:
        row.shipped_at = now
        consume_unreserved(session, site, req.lines)
        return {}
    return reserve_held_by_dc(session, site, req.lines)


def adopt(
    session: Session,
    row: OrderRow,
    lines: Sequence[OrderLine],
    site: str,
    dc_ref: str,
    shipped: bool,
    now: datetime,
) -> dict[str, int]:
    """The store follows the DC that holds the order: its reservation moves there from where the
    store had it (if anywhere), and its status becomes that DC's. Returns stock raised."""
    if row.status in LIVE_AT_DC and row.site is not None:
        release(session, row.site, lines)
    row.site, row.dc_ref, row.next_attempt_at, row.updated_at = site, dc_ref, None, now
    row.routed_at = now
    row.cancelled_at = None
    if shipped:
        row.status, row.shipped_at = OrderStatus.SHIPPED.value, now
        consume_unreserved(session, site, lines)
        return {}
    row.status = OrderStatus.ACCEPTED.value
    return reserve_held_by_dc(session, site, lines)

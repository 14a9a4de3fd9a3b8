"""Order repository: orders, lines, attempts, stock reservations and pending DC cancels.

Functions take a Session and never commit: the caller owns the unit of work.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from control_plane.domain import AttemptOutcome, OrderLine, OrderRequest, OrderStatus
from control_plane.store.tables import DcCancelRow, OrderLineRow, OrderRow, RouteAttemptRow, StockRow

LIVE_AT_DC = (OrderStatus.ROUTED.value, OrderStatus.ACCEPTED.value)


def find_by_key(session: Session, channel: str, external_id: str) -> OrderRow | None:
    return session.scalar(
        select(OrderRow).where(OrderRow.channel == channel, OrderRow.external_id == external_id)
    )


def get_order(session: Session, order_id: str, for_update: bool = False) -> OrderRow | None:
    stmt = select(OrderRow).where(OrderRow.id == order_id)
    if for_update and session.bind is not None and session.bind.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return session.scalar(stmt)


def insert_order(
    session: Session,
    order_id: str,
    req: OrderRequest,
    status: OrderStatus,
    site: str | None,
    eta: datetime | None,
    now: datetime,
    next_attempt_at: datetime | None,
) -> OrderRow:
    row = OrderRow(
        id=order_id,
        channel=req.channel,
        external_id=req.external_id,
        customer_id=req.customer.id,
        customer_name=req.customer.name,
        customer_email=req.customer.email,
        customer_phone=req.customer.phone,
        customer_locale=req.customer.locale,
        notify_via=req.customer.notify_via,
        ship_region=req.ship_to.region,
        ship_postal_code=req.ship_to.postal_code,
        ship_lat=req.ship_to.lat,
        ship_lon=req.ship_to.lon,
        placed_at=req.placed_at,
        promised_by=req.promised_by,
        status=status.value,
        site=site,
        eta=eta,
        total=sum((line.unit_price * line.qty for line in req.lines), Decimal(0)),
        attempts_count=0,
        next_attempt_at=next_attempt_at,
        routed_at=now if site else None,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()  # the lines' foreign key needs the order row first (no ORM relationship here)
    session.add_all(
        OrderLineRow(order_id=order_id, line_no=i, sku=line.sku, qty=line.qty, unit_price=line.unit_price)
        for i, line in enumerate(req.lines)
    )
    return row


def order_lines(session: Session, order_id: str) -> list[OrderLine]:
    rows = session.scalars(
        select(OrderLineRow).where(OrderLineRow.order_id == order_id).order_by(OrderLineRow.line_no)
    )
    return [OrderLine(r.sku, r.qty, r.unit_price) for r in rows]


def attempts(session: Session, order_id: str) -> list[RouteAttemptRow]:
    stmt = select(RouteAttemptRow).where(RouteAttemptRow.order_id == order_id).order_by(RouteAttemptRow.id)
    return list(session.scalars(stmt))


def add_attempt(
    session: Session,
    order_id: str,
    site: str | None,
    outcome: AttemptOutcome | str,
    reason: str,
    now: datetime,
    latency_ms: float | None = None,
) -> None:
    session.add(
        RouteAttemptRow(
            order_id=order_id,
            at=now,
            site=site,
            outcome=str(outcome),
            reason=reason[:2000],
            latency_ms=latency_ms,
        )
    )


def available_stock(session: Session, skus: Iterable[str]) -> dict[tuple[str, str], int]:
    """Units free to reserve, per (site, sku), for the given SKUs at every site."""
    stmt = select(StockRow.site, StockRow.sku, StockRow.on_hand - StockRow.reserved).where(
        StockRow.sku.in_(sorted(set(skus)))
    )
    return {(site, sku): int(avail) for site, sku, avail in session.execute(stmt)}


def _per_sku(lines: Sequence[OrderLine]) -> list[tuple[str, int]]:
    qty: Counter[str] = Counter()
    for line in lines:
        qty[line.sku] += line.qty
    # a fixed lock order (by SKU) keeps two orders reserving the same SKUs from deadlocking
    return sorted(qty.items())


def reserve(session: Session, site: str, lines: Sequence[OrderLine]) -> bool:
    """Reserve every line at `site`, all or nothing; False when a line lacks free units."""
    done: list[tuple[str, int]] = []
    for sku, qty in _per_sku(lines):
        res = session.execute(
            update(StockRow)
            .where(StockRow.site == site, StockRow.sku == sku, StockRow.on_hand - StockRow.reserved >= qty)
            .values(reserved=StockRow.reserved + qty)
        )
        if res.rowcount != 1:  # type: ignore[attr-defined]
            _release(session, site, done)
            return False
        done.append((sku, qty))
    return True


def release(session: Session, site: str, lines: Sequence[OrderLine]) -> None:
    _release(session, site, _per_sku(lines))


def _release(session: Session, site: str, per_sku: Sequence[tuple[str, int]]) -> None:
    for sku, qty in per_sku:
        session.execute(
            update(StockRow)
            .where(StockRow.site == site, StockRow.sku == sku)
            .values(reserved=StockRow.reserved - qty)
        )


def claim_due_orders(session: Session, now: datetime, limit: int) -> list[OrderRow]:
    """Held orders, and routed ones whose dispatch lease ran out, due for another try.

    On PostgreSQL the rows are locked with SKIP LOCKED so replicas never claim the same order.
    """
    stmt = (
        select(OrderRow)
        .where(
            OrderRow.status.in_((OrderStatus.HELD.value, OrderStatus.ROUTED.value)),
            OrderRow.next_attempt_at <= now,
        )
        .order_by(OrderRow.next_attempt_at)
        .limit(limit)
    )
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list(session.scalars(stmt))


def routed_counts_since(session: Session, since: datetime) -> dict[str, int]:
    stmt = (
        select(OrderRow.site, func.count())
        .where(OrderRow.routed_at >= since, OrderRow.status.in_((*LIVE_AT_DC, OrderStatus.SHIPPED.value)))
        .group_by(OrderRow.site)
    )
    return {site: int(n) for site, n in session.execute(stmt) if site is not None}


def held_count(session: Session) -> int:
    return int(session.scalar(select(func.count()).where(OrderRow.status == OrderStatus.HELD.value)) or 0)


# --- cancels owed to DCs that may hold a copy of an order that now lives elsewhere ---


def add_cancel(session: Session, order_id: str, site: str, reason: str, now: datetime) -> None:
    row = session.get(DcCancelRow, (order_id, site))
    if row is None:
        session.add(
            DcCancelRow(
                order_id=order_id,
                site=site,
                status="pending",
                reason=reason[:2000],
                attempts=0,
                created_at=now,
                next_attempt_at=now,
            )
        )
    else:
        row.status, row.reason, row.created_at, row.next_attempt_at, row.done_at = (
            "pending",
            reason[:2000],
            now,
            now,
            None,
        )


def pending_cancel_sites(session: Session, order_id: str) -> set[str]:
    stmt = select(DcCancelRow.site).where(DcCancelRow.order_id == order_id, DcCancelRow.status == "pending")
    return set(session.scalars(stmt))


def claim_due_cancels(session: Session, now: datetime, limit: int) -> list[DcCancelRow]:
    stmt = (
        select(DcCancelRow)
        .where(DcCancelRow.status == "pending", DcCancelRow.next_attempt_at <= now)
        .order_by(DcCancelRow.next_attempt_at)
        .limit(limit)
    )
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list(session.scalars(stmt))


def pending_cancel_count(session: Session) -> int:
    return int(session.scalar(select(func.count()).where(DcCancelRow.status == "pending")) or 0)

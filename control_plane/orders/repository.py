"""Order repository: orders, lines, attempts, stock reservations and pending DC cancels.

Functions take a Session and never commit: the caller owns the unit of work. The exception is
`Intake`, whose units are the intake's whole units of work (on PostgreSQL one statement each).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from control_plane.domain import Customer, OrderLine, OrderRequest, OrderStatus, ShipTo
from control_plane.store.tables import DcCancelRow, OrderLineRow, OrderRow, RouteAttemptRow, SiteRow, StockRow

LIVE_AT_DC = (OrderStatus.ROUTED.value, OrderStatus.ACCEPTED.value)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One routing or dispatch attempt of an order, as stored in route_attempts."""

    at: datetime
    site: str | None
    outcome: str
    reason: str
    latency_ms: float | None = None


# The intake hot path runs prebuilt statements with bound parameters: SQLAlchemy compiles and
# caches each once, instead of building (and cache-keying) a fresh statement for every order.
ORDERS, _lines, _attempts, _stock = (
    OrderRow.__table__,
    OrderLineRow.__table__,
    RouteAttemptRow.__table__,
    StockRow.__table__,
)
_FIND_ID = select(ORDERS.c.id).where(
    ORDERS.c.channel == bindparam("p_channel"), ORDERS.c.external_id == bindparam("p_external_id")
)
_MARK_ACCEPTED = (
    update(ORDERS)
    .where(
        ORDERS.c.id == bindparam("p_id"),
        ORDERS.c.site == bindparam("p_site"),
        ORDERS.c.status == OrderStatus.ROUTED.value,
    )
    .values(
        status=OrderStatus.ACCEPTED.value,
        dc_ref=bindparam("p_dc_ref"),
        next_attempt_at=None,
        attempts_count=ORDERS.c.attempts_count + 1,
        updated_at=bindparam("p_now"),
    )
)
_INSERT_ORDER = insert(ORDERS)
_INSERT_LINES = insert(_lines)
_INSERT_ATTEMPT = insert(_attempts)
_AVAILABLE = select(_stock.c.site, _stock.c.sku, _stock.c.on_hand - _stock.c.reserved).where(
    _stock.c.sku.in_(bindparam("p_skus", expanding=True))
)
_RESERVE = (
    update(_stock)
    .where(
        _stock.c.site == bindparam("p_site"),
        _stock.c.sku == bindparam("p_sku"),
        _stock.c.on_hand - _stock.c.reserved >= bindparam("p_qty"),
    )
    .values(reserved=_stock.c.reserved + bindparam("p_qty"))
)
_RELEASE = (
    update(_stock)
    .where(_stock.c.site == bindparam("p_site"), _stock.c.sku == bindparam("p_sku"))
    .values(reserved=_stock.c.reserved - bindparam("p_qty"))
)


def find_by_key(session: Session, channel: str, external_id: str) -> OrderRow | None:
    return session.scalar(
        select(OrderRow).where(OrderRow.channel == channel, OrderRow.external_id == external_id)
    )


def key_owner(session: Session, channel: str, external_id: str) -> tuple[str, str | None] | None:
    """The order holding (channel, external_id), with the hash of the request that created it."""
    row = session.execute(
        select(OrderRow.id, OrderRow.request_hash).where(
            OrderRow.channel == channel, OrderRow.external_id == external_id
        )
    ).first()
    return None if row is None else (row[0], row[1])


def find_id_by_key(session: Session, channel: str, external_id: str) -> str | None:
    return (
        session.connection().execute(_FIND_ID, {"p_channel": channel, "p_external_id": external_id}).scalar()
    )


def mark_accepted(session: Session, order_id: str, site: str, dc_ref: str, now: datetime) -> bool:
    """Record a DC's acknowledgement; False when the order is no longer routed to that site."""
    res = session.connection().execute(
        _MARK_ACCEPTED, {"p_id": order_id, "p_site": site, "p_dc_ref": dc_ref, "p_now": now}
    )
    return res.rowcount == 1


def _is_postgresql(session: Session) -> bool:
    return session.bind is not None and session.bind.dialect.name == "postgresql"


def get_order(session: Session, order_id: str, for_update: bool = False) -> OrderRow | None:
    stmt = select(OrderRow).where(OrderRow.id == order_id)
    if for_update and _is_postgresql(session):
        stmt = stmt.with_for_update()
    return session.scalar(stmt)


def order_values(
    order_id: str,
    req: OrderRequest,
    status: OrderStatus,
    site: str | None,
    eta: datetime | None,
    now: datetime,
    next_attempt_at: datetime | None,
    attempts_count: int,
    request_hash: str | None = None,
) -> dict[str, Any]:
    return {
        "request_hash": request_hash,
        "id": order_id,
        "channel": req.channel,
        "external_id": req.external_id,
        "customer_id": req.customer.id,
        "customer_name": req.customer.name,
        "customer_email": req.customer.email,
        "customer_phone": req.customer.phone,
        "customer_locale": req.customer.locale,
        "notify_via": req.customer.notify_via,
        "ship_region": req.ship_to.region,
        "ship_postal_code": req.ship_to.postal_code,
        "ship_lat": req.ship_to.lat,
        "ship_lon": req.ship_to.lon,
        "placed_at": req.placed_at,
        "promised_by": req.promised_by,
        "status": status.value,
        "site": site,
        "dc_ref": None,
        "eta": eta,
        "total": sum((line.unit_price * line.qty for line in req.lines), Decimal(0)),
        "attempts_count": attempts_count,
        "next_attempt_at": next_attempt_at,
        "routed_at": now if site else None,
        "created_at": now,
        "updated_at": now,
    }


def insert_order(
    session: Session,
    order_id: str,
    req: OrderRequest,
    status: OrderStatus,
    site: str | None,
    eta: datetime | None,
    now: datetime,
    next_attempt_at: datetime | None,
    attempts_count: int = 0,
    request_hash: str | None = None,
) -> None:
    conn = session.connection()
    values = order_values(
        order_id, req, status, site, eta, now, next_attempt_at, attempts_count, request_hash
    )
    conn.execute(_INSERT_ORDER, values)
    conn.execute(
        _INSERT_LINES,
        [
            {"order_id": order_id, "line_no": i, "sku": li.sku, "qty": li.qty, "unit_price": li.unit_price}
            for i, li in enumerate(req.lines)
        ],
    )


def order_lines(session: Session, order_id: str) -> list[OrderLine]:
    rows = session.scalars(
        select(OrderLineRow).where(OrderLineRow.order_id == order_id).order_by(OrderLineRow.line_no)
    )
    return [OrderLine(r.sku, r.qty, r.unit_price) for r in rows]


def attempts(session: Session, order_id: str) -> list[RouteAttemptRow]:
    stmt = select(RouteAttemptRow).where(RouteAttemptRow.order_id == order_id).order_by(RouteAttemptRow.id)
    return list(session.scalars(stmt))


def add_attempt(session: Session, order_id: str, attempt: Attempt) -> None:
    session.connection().execute(
        _INSERT_ATTEMPT,
        {
            "order_id": order_id,
            "at": attempt.at,
            "site": attempt.site,
            "outcome": attempt.outcome,
            "reason": attempt.reason[:2000],
            "latency_ms": attempt.latency_ms,
        },
    )


def available_stock(session: Session, skus: Iterable[str]) -> dict[tuple[str, str], int]:
    """Units free to reserve, per (site, sku), for the given SKUs at every site."""
    rows = session.connection().execute(_AVAILABLE, {"p_skus": sorted(set(skus))})
    return {(site, sku): int(avail) for site, sku, avail in rows}


def _per_sku(lines: Sequence[OrderLine]) -> list[tuple[str, int]]:
    qty: Counter[str] = Counter()
    for line in lines:
        qty[line.sku] += line.qty
    # a fixed lock order (by SKU) keeps two orders reserving the same SKUs from deadlocking
    return sorted(qty.items())


def site_open(session: Session, site: str) -> bool:
    """Whether `site` takes orders now, read under a key-share lock of its row on PostgreSQL.

    A failover locks the row FOR UPDATE before it stops routing there, which waits for every
    placement holding this lock and makes every later one wait and read the new value: once the
    failover's stop has committed, no placement anywhere can still commit an order at that site.
    """
    stmt = select(SiteRow.code).where(SiteRow.code == site, SiteRow.accepting.is_(True))
    if _is_postgresql(session):
        stmt = stmt.with_for_update(key_share=True)
    return session.execute(stmt).first() is not None


def reserve(session: Session, site: str, lines: Sequence[OrderLine]) -> bool:
    """Reserve every line at `site`, all or nothing; False when the site stopped taking orders or a
    line lacks free units."""
    if not site_open(session, site):
        return False
    conn = session.connection()
    done: list[tuple[str, int]] = []
    for sku, qty in _per_sku(lines):
        if conn.execute(_RESERVE, {"p_site": site, "p_sku": sku, "p_qty": qty}).rowcount != 1:
            _release(session, site, done)
            return False
        done.append((sku, qty))
    return True


def release(session: Session, site: str, lines: Sequence[OrderLine]) -> None:
    _release(session, site, _per_sku(lines))


def _release(session: Session, site: str, per_sku: Sequence[tuple[str, int]]) -> None:
    conn = session.connection()
    for sku, qty in per_sku:
        conn.execute(_RELEASE, {"p_site": site, "p_sku": sku, "p_qty": qty})


def claim_due_orders(session: Session, now: datetime, limit: int, lease_until: datetime) -> list[OrderRow]:
    """Held orders, and routed ones whose dispatch lease ran out, due for another try; leased until
    `lease_until` so other replicas skip them meanwhile.

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
    if _is_postgresql(session):
        stmt = stmt.with_for_update(skip_locked=True)
    rows = list(session.scalars(stmt))
    for r in rows:
        r.next_attempt_at = lease_until
    return rows


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


def cancels_owed_by(session: Session, site: str) -> list[DcCancelRow]:
    stmt = select(DcCancelRow).where(DcCancelRow.site == site, DcCancelRow.status == "pending")
    return list(session.scalars(stmt))


def in_flight_at(
    session: Session, site: str, limit: int | None = None
) -> list[tuple[OrderRow, list[OrderLine], set[str]]]:
    """Orders live at `site` (routed or accepted), each with its lines and the sites owed a cancel
    of it; three queries however many orders (a failover reads a thousand at once)."""
    stmt = (
        select(OrderRow).where(OrderRow.site == site, OrderRow.status.in_(LIVE_AT_DC)).order_by(OrderRow.id)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    rows = list(session.scalars(stmt))
    ids = [r.id for r in rows]
    lines: dict[str, list[OrderLine]] = {i: [] for i in ids}
    avoid: dict[str, set[str]] = {i: set() for i in ids}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for li in session.scalars(
            select(OrderLineRow)
            .where(OrderLineRow.order_id.in_(chunk))
            .order_by(OrderLineRow.order_id, OrderLineRow.line_no)
        ):
            lines[li.order_id].append(OrderLine(li.sku, li.qty, li.unit_price))
        for order_id, owed_site in session.execute(
            select(DcCancelRow.order_id, DcCancelRow.site).where(
                DcCancelRow.order_id.in_(chunk), DcCancelRow.status == "pending"
            )
        ):
            avoid[order_id].add(owed_site)
    return [(r, lines[r.id], avoid[r.id]) for r in rows]


def live_count_at(session: Session, site: str) -> int:
    stmt = select(func.count()).where(OrderRow.site == site, OrderRow.status.in_(LIVE_AT_DC))
    return int(session.scalar(stmt) or 0)


# --- the order's state transitions, on a row the caller has locked (get_order(for_update=True)) ---


def route_to(row: OrderRow, site: str, eta: datetime, now: datetime, lease_until: datetime) -> None:
    """Routed to `site` (its stock already reserved); the retry loop re-posts after `lease_until`."""
    row.status, row.site, row.eta, row.dc_ref = OrderStatus.ROUTED.value, site, eta, None
    row.routed_at, row.next_attempt_at, row.updated_at = now, lease_until, now


def hold(row: OrderRow, now: datetime, next_attempt_at: datetime) -> None:
    """No DC can take it now: kept, with no site, retried from `next_attempt_at`."""
    row.status, row.site, row.eta, row.dc_ref = OrderStatus.HELD.value, None, None, None
    row.next_attempt_at, row.updated_at = next_attempt_at, now


def count_attempt(row: OrderRow, now: datetime) -> int:
    row.attempts_count += 1
    row.updated_at = now
    return row.attempts_count


def postpone(row: OrderRow, next_attempt_at: datetime) -> None:
    row.next_attempt_at = next_attempt_at


def request_from_row(row: OrderRow, lines: Sequence[OrderLine]) -> OrderRequest:
    """The order as routing and the DC payload read it."""
    return OrderRequest(
        channel=row.channel,
        external_id=row.external_id,
        customer=Customer(
            row.customer_id,
            row.customer_name,
            row.customer_email,
            row.customer_phone,
            row.customer_locale,
            row.notify_via,
        ),
        ship_to=ShipTo(row.ship_region, row.ship_postal_code, row.ship_lat, row.ship_lon),
        lines=tuple(lines),
        placed_at=row.placed_at,
        promised_by=row.promised_by,
    )

"""Orders, their lines and attempts, the retry loop's claims, and the order's state transitions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, exists, func, insert, or_, select, update
from sqlalchemy.orm import Session

from control_plane.domain import AttemptOutcome, Customer, OrderLine, OrderRequest, OrderStatus, ShipTo
from control_plane.orders.repository._common import is_postgresql as _is_postgresql
from control_plane.store.tables import DcCancelRow, OrderLineRow, OrderRow, RouteAttemptRow, StockRow

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


def list_orders(session: Session, status: str | None, site: str | None, limit: int) -> list[OrderRow]:
    """The newest orders, optionally of one status and one site."""
    stmt = select(OrderRow).order_by(OrderRow.created_at.desc()).limit(limit)
    if status is not None:
        stmt = stmt.where(OrderRow.status == status)
    if site is not None:
        stmt = stmt.where(OrderRow.site == site)
    return list(session.scalars(stmt))


def routed_since(session: Session, site: str, since: datetime) -> int:
    """Orders routed to `site` since `since`, wherever they are now (a site's recent intake)."""
    stmt = select(func.count()).where(OrderRow.site == site, OrderRow.routed_at >= since)
    return int(session.scalar(stmt) or 0)


def live_count_at(session: Session, site: str) -> int:
    stmt = select(func.count()).where(OrderRow.site == site, OrderRow.status.in_(LIVE_AT_DC))
    return int(session.scalar(stmt) or 0)


def route_to(row: OrderRow, site: str, eta: datetime, now: datetime, lease_until: datetime) -> None:
    """Routed to `site` (its stock already reserved); the retry loop re-posts after `lease_until`."""
    row.status, row.site, row.eta, row.dc_ref = OrderStatus.ROUTED.value, site, eta, None
    row.routed_at, row.next_attempt_at, row.updated_at = now, lease_until, now


def hold(row: OrderRow, now: datetime, next_attempt_at: datetime) -> None:
    """No DC can take it now: kept, with no site, retried from `next_attempt_at`."""
    row.status, row.site, row.eta, row.dc_ref = OrderStatus.HELD.value, None, None, None
    row.next_attempt_at, row.updated_at = next_attempt_at, now


def ship(row: OrderRow, site: str, at: datetime, now: datetime) -> None:
    """Shipped by `site` at the DC's time `at` (a cancel we asked for first is undone)."""
    row.status, row.site, row.shipped_at, row.cancelled_at = OrderStatus.SHIPPED.value, site, at, None
    row.next_attempt_at, row.updated_at = None, now


def cancel(row: OrderRow, now: datetime) -> None:
    """Cancelled by its channel or an operator: never routed again."""
    row.status, row.cancelled_at = OrderStatus.CANCELLED.value, now
    row.next_attempt_at, row.updated_at = None, now


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


def lock_order(session: Session, order_id: str) -> OrderRow | None:
    """The order row, locked until the end of the transaction on PostgreSQL (SQLite: one writer)."""
    return get_order(session, order_id, for_update=True)


# outcomes of attempts after which a DC may hold the order (it took it, or the call may have reached it)
_REACHED = (AttemptOutcome.ACCEPTED.value, AttemptOutcome.FAILED.value)


def has_attempt(session: Session, order_id: str, site: str, outcome: str) -> bool:
    """Whether the order's timeline already has a row with this outcome at this site."""
    stmt = select(
        exists().where(
            RouteAttemptRow.order_id == order_id,
            RouteAttemptRow.site == site,
            RouteAttemptRow.outcome == outcome,
        )
    )
    return bool(session.scalar(stmt))


def was_sent_to(session: Session, order_id: str, site: str) -> bool:
    """Whether the DC at `site` may ever have held the order: it took it, a call may have reached it,
    or a cancel was owed there."""
    reached = exists().where(
        RouteAttemptRow.order_id == order_id,
        RouteAttemptRow.site == site,
        RouteAttemptRow.outcome.in_(_REACHED),
    )
    owed = exists().where(DcCancelRow.order_id == order_id, DcCancelRow.site == site)
    return bool(session.scalar(select(or_(reached, owed))))


def claim_poll_due(
    session: Session, now: datetime, accepted_before: datetime, next_poll_at: datetime, limit: int
) -> list[tuple[str, str]]:
    """Accepted orders whose DC is due a poll: (order id, site), oldest first; each is scheduled for
    its next poll at `next_poll_at` in the same statement's transaction.

    For an accepted order `next_attempt_at` is when its DC may next be polled (the retry loop only
    claims held and routed orders, so it never sees these). Never-polled orders come first, then the
    least recently polled, so a batch smaller than the backlog still reaches every order in turn.
    On PostgreSQL the rows are locked with SKIP LOCKED so two leaders (a hand-over) never poll the
    same order at once, and an order locked by an event or a move is left for the next run.
    """
    due_at = OrderRow.next_attempt_at
    stmt = (
        select(OrderRow.id, OrderRow.site)
        .where(
            OrderRow.status == OrderStatus.ACCEPTED.value,
            OrderRow.site.is_not(None),
            OrderRow.updated_at <= accepted_before,
            or_(due_at.is_(None), due_at <= now),
        )
        .order_by(due_at.is_not(None), due_at, OrderRow.updated_at)
        .limit(limit)
    )
    if _is_postgresql(session):
        stmt = stmt.with_for_update(skip_locked=True)
    due = [(order_id, site) for order_id, site in session.execute(stmt) if site is not None]
    if due:
        session.execute(
            update(OrderRow)
            .where(OrderRow.id.in_([order_id for order_id, _ in due]))
            .values(next_attempt_at=next_poll_at)
            .execution_options(synchronize_session=False)
        )
    return due

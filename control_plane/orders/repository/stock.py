"""Stock: what is free per (site, sku), reservations all or nothing, and units a DC shipped."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from sqlalchemy import bindparam, case, select, update
from sqlalchemy.orm import Session

from control_plane.domain import OrderLine
from control_plane.orders.repository._common import is_postgresql as _is_postgresql
from control_plane.store.tables import SiteRow, StockRow

_stock = StockRow.__table__


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


# the DC shipped units we had reserved for the order: they leave both the shelf and the reservation
_CONSUME_RESERVED = (
    update(_stock)
    .where(_stock.c.site == bindparam("p_site"), _stock.c.sku == bindparam("p_sku"))
    .values(on_hand=_stock.c.on_hand - bindparam("p_qty"), reserved=_stock.c.reserved - bindparam("p_qty"))
)


# the DC shipped units no longer reserved for the order (released when it was cancelled or moved):
# they leave the shelf, never below what other orders have reserved there (reserved <= on_hand)
_left = _stock.c.on_hand - bindparam("p_qty")


_CONSUME_UNRESERVED = (
    update(_stock)
    .where(_stock.c.site == bindparam("p_site"), _stock.c.sku == bindparam("p_sku"))
    .values(on_hand=case((_left >= _stock.c.reserved, _left), else_=_stock.c.reserved))
)


def consume_reserved(session: Session, site: str, lines: Sequence[OrderLine]) -> None:
    """The DC shipped the order's units from its reservation: take them off on_hand and reserved."""
    conn = session.connection()
    for sku, qty in _per_sku(lines):
        conn.execute(_CONSUME_RESERVED, {"p_site": site, "p_sku": sku, "p_qty": qty})


def consume_unreserved(session: Session, site: str, lines: Sequence[OrderLine]) -> None:
    """The DC shipped units we had already released: take them off on_hand (not below reserved)."""
    conn = session.connection()
    for sku, qty in _per_sku(lines):
        conn.execute(_CONSUME_UNRESERVED, {"p_site": site, "p_sku": sku, "p_qty": qty})

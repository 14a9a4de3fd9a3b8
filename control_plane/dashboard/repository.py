"""The dashboard's own queries: backlogs, held orders, notice counts, per-minute intake."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session, aliased

from control_plane.store.tables import NoticeRow, OrderRow, RouteAttemptRow

MINUTES = 60


@dataclass(frozen=True, slots=True)
class HeldOrder:
    order_id: str
    channel: str
    region: str
    since: datetime
    attempts: int


def backlog_by_site(session: Session) -> dict[str, int]:
    """Orders a DC has acknowledged and not yet shipped, per site."""
    rows = session.execute(
        select(OrderRow.site, func.count()).where(OrderRow.status == "accepted").group_by(OrderRow.site)
    )
    return {site: n for site, n in rows if site}


def held_orders(session: Session, limit: int) -> tuple[int, list[HeldOrder]]:
    """How many orders are held, and the oldest of them."""
    total = session.scalar(select(func.count()).where(OrderRow.status == "held")) or 0
    rows = session.execute(
        select(
            OrderRow.id, OrderRow.channel, OrderRow.ship_region, OrderRow.created_at, OrderRow.attempts_count
        )
        .where(OrderRow.status == "held")
        .order_by(OrderRow.created_at)
        .limit(limit)
    )
    return int(total), [HeldOrder(*r) for r in rows]


def notice_counts(session: Session) -> dict[str, int]:
    rows = session.execute(select(NoticeRow.status, func.count()).group_by(NoticeRow.status))
    return {status: int(n) for status, n in rows}


def _minute(session: Session, column: object) -> object:
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.date_trunc("minute", column), "YYYY-MM-DD HH24:MI")
    return func.strftime("%Y-%m-%d %H:%M", column)


def _series(rows: object, start: datetime) -> list[int]:
    counts = [0] * MINUTES
    for key, n in rows:  # type: ignore[attr-defined]
        at = datetime.strptime(key, "%Y-%m-%d %H:%M").replace(tzinfo=start.tzinfo)
        i = int((at - start).total_seconds() // 60)
        if 0 <= i < MINUTES:
            counts[i] += int(n)
    return counts


def per_minute(session: Session, now: datetime) -> tuple[datetime, list[int], list[int]]:
    """Orders taken and orders rerouted (accepted after a failed try elsewhere) per minute, last hour."""
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=MINUTES - 1)
    minute = _minute(session, OrderRow.created_at)
    orders = session.execute(
        select(minute, func.count()).where(OrderRow.created_at >= start).group_by(minute)
    ).all()
    earlier = aliased(RouteAttemptRow)
    tried_before = exists().where(
        earlier.order_id == RouteAttemptRow.order_id,
        earlier.id < RouteAttemptRow.id,
        earlier.outcome.in_(("failed", "refused", "breaker_open", "rejected")),
    )
    at_minute = _minute(session, RouteAttemptRow.at)
    reroutes = session.execute(
        select(at_minute, func.count())
        .where(RouteAttemptRow.at >= start, RouteAttemptRow.outcome == "accepted", tried_before)
        .group_by(at_minute)
    ).all()
    return start, _series(orders, start), _series(reroutes, start)

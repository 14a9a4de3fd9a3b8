"""Notices and their letters: writing them, listing them, what the alert rules and timelines read.

Functions take a Session and never commit: the caller owns the unit of work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import psycopg as _psycopg_dialect  # noqa: F401  (registers it)
from sqlalchemy.orm import Session

from control_plane.store.tables import IncidentEventRow, IncidentRow, NoticeLetterRow, NoticeRow, OrderRow

PENDING, SENT, FAILED, SUPPRESSED = "pending", "sent", "failed", "suppressed"
_notices = NoticeRow.__table__


@dataclass(frozen=True, slots=True)
class NewNotice:
    order_id: str
    customer_id: str
    incident_id: int | None
    kind: str
    locale: str
    channel: str
    reason: str
    cause_site: str | None
    promised_by: datetime
    eta: datetime | None

    @property
    def dedupe_key(self) -> str:
        return f"{self.order_id}:{self.incident_id if self.incident_id is not None else '-'}:{self.kind}"


def open_incidents_for(session: Session, subjects: Sequence[str]) -> dict[str, tuple[int, str]]:
    """Each subject's unresolved incident (the latest), as (id, kind)."""
    out: dict[str, tuple[int, str]] = {}
    if not subjects:
        return out
    stmt = (
        select(IncidentRow.subject, IncidentRow.id, IncidentRow.kind)
        .where(IncidentRow.subject.in_(sorted(set(subjects))), IncidentRow.status != "resolved")
        .order_by(IncidentRow.started_at)
    )
    for subject, incident_id, kind in session.execute(stmt):
        out[subject] = (incident_id, kind)  # later rows win: the latest incident
    return out


def add_notices(session: Session, notices: Sequence[NewNotice], now: datetime, send_after: datetime) -> int:
    """Write the notices not already written (unique per order, incident and kind), each joining its
    customer's letter for that incident if one is still unsent, else a new letter due at `send_after`.
    Return how many were new."""
    if not notices:
        return 0
    keys = [n.dedupe_key for n in notices]
    seen = set(session.scalars(select(NoticeRow.dedupe_key).where(NoticeRow.dedupe_key.in_(keys))))
    fresh: dict[str, NewNotice] = {}
    for n in notices:
        if n.dedupe_key not in seen:
            fresh.setdefault(n.dedupe_key, n)
    if not fresh:
        return 0
    letters = _letters_for(session, list(fresh.values()), now, send_after)
    rows = [
        {
            "order_id": n.order_id,
            "incident_id": n.incident_id,
            "kind": n.kind,
            "dedupe_key": key,
            "letter_id": letters[(n.customer_id, n.incident_id, n.kind)],
            "customer_id": n.customer_id,
            "locale": n.locale,
            "channel": n.channel,
            "status": PENDING,
            "reason": n.reason[:200],
            "cause_site": n.cause_site,
            "promised_by": n.promised_by,
            "eta": n.eta,
            "attempts": 0,
            "created_at": now,
        }
        for key, n in fresh.items()
    ]
    # a concurrent writer of the same key (it holds the order's lock, so this is rare) wins quietly
    # rather than aborting the order's transaction
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(dialect.insert(_notices).on_conflict_do_nothing(index_elements=["dedupe_key"]), rows)
    return len(rows)


def _letters_for(
    session: Session, notices: list[NewNotice], now: datetime, send_after: datetime
) -> dict[tuple[str, int | None, str], int]:
    """The unsent letter of each (customer, incident, kind), made where there is none."""
    wanted = {(n.customer_id, n.incident_id, n.kind): n for n in notices}
    out: dict[tuple[str, int | None, str], int] = {}
    customers = sorted({c for c, _, _ in wanted})
    for start in range(0, len(customers), 500):
        stmt = select(
            NoticeLetterRow.id, NoticeLetterRow.customer_id, NoticeLetterRow.incident_id, NoticeLetterRow.kind
        ).where(
            NoticeLetterRow.customer_id.in_(customers[start : start + 500]),
            NoticeLetterRow.status == PENDING,
            # one being sent right now may be joined too: its sender moves what it did not read
            # into a letter of its own
            NoticeLetterRow.attempts == 0,
        )
        for letter_id, customer, incident, kind in session.execute(stmt):
            if (customer, incident, kind) in wanted:
                out.setdefault((customer, incident, kind), letter_id)
    new = [
        NoticeLetterRow(
            customer_id=c,
            incident_id=i,
            kind=k,
            channel=n.channel,
            status=PENDING,
            attempts=0,
            created_at=now,
            next_attempt_at=send_after,
        )
        for (c, i, k), n in wanted.items()
        if (c, i, k) not in out
    ]
    if new:
        session.add_all(new)
        session.flush()
        for letter in new:
            out[(letter.customer_id, letter.incident_id, letter.kind)] = letter.id
    return out


NOTICES_EVENT = "notices_sent"
MERGE_EVENTS_S = 60.0


def note_on_timelines(session: Session, sent: dict[int, dict[str, int]], now: datetime) -> None:
    """Show notices sent on their incidents' timelines: one event a minute per incident, updated as
    letters go out, rather than one per customer."""
    for incident_id, by_channel in sorted(sent.items()):
        last = session.scalar(
            select(IncidentEventRow)
            .where(IncidentEventRow.incident_id == incident_id, IncidentEventRow.kind == NOTICES_EVENT,
                   IncidentEventRow.at >= now - timedelta(seconds=MERGE_EVENTS_S))
            .order_by(IncidentEventRow.id.desc())
            .limit(1)
            .with_for_update()
        )  # fmt: skip
        counts: dict[str, int] = dict((last.data or {}).get("sent", {})) if last is not None else {}
        for channel, n in by_channel.items():
            counts[channel] = counts.get(channel, 0) + n
        by = ", ".join(f"{c} {k}" for c, k in sorted(counts.items()))
        message = f"delay notices sent to customers: {sum(counts.values())} orders ({by})"
        if last is None:
            session.add(IncidentEventRow(incident_id=incident_id, at=now, kind=NOTICES_EVENT, message=message,
                                         data={"sent": counts}))  # fmt: skip
        else:
            last.message, last.data = message, {"sent": counts}


def list_notices(
    session: Session, order_id: str | None, incident_id: int | None, status: str | None, limit: int
) -> list[NoticeRow]:
    stmt = select(NoticeRow).order_by(NoticeRow.id.desc()).limit(limit)
    if order_id is not None:
        stmt = stmt.where(NoticeRow.order_id == order_id)
    if incident_id is not None:
        stmt = stmt.where(NoticeRow.incident_id == incident_id)
    if status is not None:
        stmt = stmt.where(NoticeRow.status == status)
    return list(session.scalars(stmt))


def get_notice(session: Session, notice_id: int) -> tuple[NoticeRow, NoticeLetterRow] | None:
    row = session.get(NoticeRow, notice_id)
    if row is None:
        return None
    letter_row = session.get(NoticeLetterRow, row.letter_id)
    assert letter_row is not None
    return row, letter_row


def outcomes_since(session: Session, since: datetime) -> dict[str, tuple[int, int]]:
    """(sent, failed) notices per channel that ended since `since` (for NoticeDeliveryFailing)."""
    stmt = (
        select(NoticeRow.channel, NoticeRow.status, func.count())
        .where(NoticeRow.done_at >= since, NoticeRow.status.in_((SENT, FAILED)))
        .group_by(NoticeRow.channel, NoticeRow.status)
    )
    out: dict[str, tuple[int, int]] = {}
    for channel, status, n in session.execute(stmt):
        sent, failed = out.get(channel, (0, 0))
        out[channel] = (sent + int(n), failed) if status == SENT else (sent, failed + int(n))
    return out


def order_of(session: Session, order_id: str) -> OrderRow | None:
    return session.get(OrderRow, order_id)


def held_orders_near_promise(session: Session, before: datetime, limit: int) -> list[OrderRow]:
    """Held orders whose promise falls before `before` and that have no delay notice yet."""
    noticed = select(NoticeRow.order_id).where(NoticeRow.kind == "delay")
    stmt = (
        select(OrderRow)
        .where(OrderRow.status == "held", OrderRow.promised_by < before, OrderRow.id.not_in(noticed))
        .order_by(OrderRow.promised_by)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def sent_held_notice(session: Session, order_id: str) -> NoticeRow | None:
    """The delay notice sent while the order was held (no ETA), if any."""
    stmt = (
        select(NoticeRow)
        .where(
            NoticeRow.order_id == order_id,
            NoticeRow.kind == "delay",
            NoticeRow.status == SENT,
            NoticeRow.eta.is_(None),
        )
        .limit(1)
    )
    return session.scalar(stmt)


def letters_by_id(session: Session, ids: set[int]) -> dict[int, NoticeLetterRow]:
    if not ids:
        return {}
    return {
        r.id: r for r in session.scalars(select(NoticeLetterRow).where(NoticeLetterRow.id.in_(sorted(ids))))
    }


def latest_cause(session: Session, order_id: str) -> tuple[str | None, str | None] | None:
    """The cause site and incident kind of the order's latest delay notice, if it has one."""
    stmt = (
        select(NoticeRow.cause_site, IncidentRow.kind)
        .outerjoin(IncidentRow, IncidentRow.id == NoticeRow.incident_id)
        .where(NoticeRow.order_id == order_id, NoticeRow.kind == "delay")
        .order_by(NoticeRow.id.desc())
        .limit(1)
    )
    row = session.execute(stmt).first()
    return (row[0], row[1]) if row is not None else None

"""The send path's queries: a letter with its orders as they are now, and the record of a send.

Prebuilt statements with bound parameters on a Core connection (any dialect), and on PostgreSQL the
same two as single statements on a psycopg cursor in autocommit mode (see `finish_letter_pg`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import psycopg as _psycopg_dialect  # noqa: F401  (registers it)
from sqlalchemy.orm import Session

from control_plane.notices.repository.notices import FAILED, PENDING, SENT, SUPPRESSED
from control_plane.store.tables import IncidentRow, NoticeLetterRow, NoticeRow, OrderRow

_notices = NoticeRow.__table__


@dataclass(frozen=True, slots=True)
class LetterLine:
    """One pending notice of a letter with its order as it is now (for suppression at send time)."""

    notice_id: int
    order_id: str
    order_number: str
    status: str
    eta: datetime | None  # the order's current ETA
    promised_by: datetime
    customer_name: str
    email: str | None
    phone: str | None
    locale: str
    notify_via: str
    cause_site: str | None


@dataclass(frozen=True, slots=True)
class LetterToSend:
    letter_id: int
    customer_id: str
    incident_id: int | None
    incident_kind: str | None
    kind: str
    channel: str
    lines: list[LetterLine]


# The send path runs prebuilt Core statements with bound parameters: ORM-enabled UPDATEs (with
# their session synchronisation) and statements built per call cost more CPU than the sends.
_letters = NoticeLetterRow.__table__
_orders = OrderRow.__table__
_incidents = IncidentRow.__table__
_LETTER_TO_SEND = (
    select(
        _letters.c.customer_id, _letters.c.incident_id, _incidents.c.kind, _letters.c.kind,
        _letters.c.channel,
        _notices.c.id, _orders.c.id, _orders.c.external_id, _orders.c.status, _orders.c.eta,
        _orders.c.promised_by, _orders.c.customer_name, _orders.c.customer_email, _orders.c.customer_phone,
        _orders.c.customer_locale, _orders.c.notify_via, _notices.c.cause_site,
    )
    .select_from(_letters)
    .join(_notices, _notices.c.letter_id == _letters.c.id)
    .join(_orders, _orders.c.id == _notices.c.order_id)
    .outerjoin(_incidents, _incidents.c.id == _letters.c.incident_id)
    .where(_letters.c.id == bindparam("p_letter"), _notices.c.status == PENDING)
    .order_by(_notices.c.id)
)  # fmt: skip
_NOTICES_SENT = (
    update(_notices)
    .where(_notices.c.id.in_(bindparam("p_ids", expanding=True)))
    .values(status=SENT, sent_at=bindparam("p_now"), done_at=bindparam("p_now"),
            provider_id=bindparam("p_provider_id"), attempts=bindparam("p_attempts"))
)  # fmt: skip
_NOTICES_SUPPRESSED = (
    update(_notices)
    .where(_notices.c.id.in_(bindparam("p_ids", expanding=True)))
    .values(status=SUPPRESSED, reason=bindparam("p_reason"), done_at=bindparam("p_now"),
            attempts=bindparam("p_attempts"))
)  # fmt: skip
_COUNT_ON_INCIDENT = (
    update(_incidents)
    .where(_incidents.c.id == bindparam("p_incident"))
    .values(notices=_incidents.c.notices + bindparam("p_n"))
)
_STILL_PENDING = (
    select(_notices.c.id).where(_notices.c.letter_id == _letters.c.id, _notices.c.status == PENDING).exists()
)
_LETTER_SENT = (
    update(_letters)
    .where(_letters.c.id == bindparam("p_letter"), ~_STILL_PENDING)
    .values(status=SENT, attempts=bindparam("p_attempts"), sent_at=bindparam("p_now"),
            provider_id=bindparam("p_provider_id"), sent_via=bindparam("p_via"), detail=bindparam("p_detail"))
)  # fmt: skip
_LETTER_SUPPRESSED = (
    update(_letters)
    .where(_letters.c.id == bindparam("p_letter"), ~_STILL_PENDING)
    .values(status=SUPPRESSED, attempts=bindparam("p_attempts"))
)
_LETTER_AGAIN = (
    update(_letters)
    .where(_letters.c.id == bindparam("p_letter"))
    .values(attempts=0, next_attempt_at=bindparam("p_now"))
)


def letter_to_send(conn: Connection, letter_id: int) -> LetterToSend | None:
    """The letter with its pending notices and their orders, in one query; None when none is left."""
    return _letter_of_rows(letter_id, conn.execute(_LETTER_TO_SEND, {"p_letter": letter_id}).all())


def _letter_of_rows(letter_id: int, rows: Sequence[Sequence[Any]]) -> LetterToSend | None:
    if not rows:
        return None
    customer, incident_id, incident_kind, kind, channel = rows[0][:5]
    return LetterToSend(letter_id, customer, incident_id, incident_kind, kind, channel,
                        [LetterLine(*r[5:]) for r in rows])  # fmt: skip


@dataclass(frozen=True, slots=True)
class Delivered:
    channel: str  # the medium it went by: email | sms | webhook
    via: str  # the channel's name: smtp | ses | sns | webhook | log
    provider_id: str
    detail: str


@dataclass(frozen=True, slots=True)
class LetterOutcome:
    """What one attempt at a letter did, to be recorded."""

    letter: LetterToSend
    sent: Sequence[int]  # notice ids the message named (empty when nothing was sent)
    quiet: Sequence[tuple[int, str]]  # notice ids suppressed, with the reason
    delivered: Delivered | None  # None: nothing was sent (all suppressed)
    attempts: int
    now: datetime


def finish_letter(conn: Connection, outcome: LetterOutcome) -> bool:
    """Record what one send did: notices sent (or suppressed, with the reason), the incident's
    counter, and the letter's end, unless orders joined it while it was being sent: then it stays
    pending (due now) for them alone, and False is returned. (Any dialect; on PostgreSQL the send
    path runs `finish_letter_pg`, the same in one statement.)"""
    letter, sent, quiet, delivered = outcome.letter, outcome.sent, outcome.quiet, outcome.delivered
    attempts, now = outcome.attempts, outcome.now
    if sent and delivered is not None:
        provider_id = delivered.provider_id[:300]
        conn.execute(_NOTICES_SENT, {"p_ids": list(sent), "p_now": now, "p_provider_id": provider_id,
                                     "p_attempts": attempts})  # fmt: skip
        if letter.incident_id is not None:
            conn.execute(_COUNT_ON_INCIDENT, {"p_incident": letter.incident_id, "p_n": len(sent)})
    by_reason: dict[str, list[int]] = {}
    for notice_id, why in quiet:
        by_reason.setdefault(why, []).append(notice_id)
    for why, ids in by_reason.items():
        conn.execute(_NOTICES_SUPPRESSED, {"p_ids": ids, "p_reason": why[:200], "p_now": now,
                                           "p_attempts": attempts})  # fmt: skip
    if delivered is None:
        ended = conn.execute(_LETTER_SUPPRESSED, {"p_letter": letter.letter_id, "p_attempts": attempts})
    else:
        ended = conn.execute(
            _LETTER_SENT,
            {"p_letter": letter.letter_id, "p_attempts": attempts, "p_now": now,
             "p_provider_id": delivered.provider_id[:300], "p_via": delivered.via,
             "p_detail": delivered.detail[:200] or None},
        )  # fmt: skip
    if ended.rowcount:
        return True
    conn.execute(_LETTER_AGAIN, {"p_letter": letter.letter_id, "p_now": now})
    return False


def fail_letter_notices(session: Session, letter_id: int, attempts: int, now: datetime) -> int:
    """The letter gave up: its pending notices fail with it; return how many."""
    return session.execute(
        update(NoticeRow)
        .where(NoticeRow.letter_id == letter_id, NoticeRow.status == PENDING)
        .values(status=FAILED, done_at=now, attempts=attempts)
    ).rowcount  # fmt: skip


def pending_count(session: Session, letter_id: int) -> int:
    stmt = select(func.count()).where(NoticeRow.letter_id == letter_id, NoticeRow.status == PENDING)
    return int(session.scalar(stmt) or 0)


# PostgreSQL: what `finish_letter` does in one statement (data-modifying CTEs), so recording a
# send is one round trip and one commit. The CTEs all see the snapshot from before the statement,
# so "no other notice of the letter is pending" must leave out the ones this statement ends; each
# data-modifying CTE runs once, to completion, whether the final UPDATE reads it or not.
_PG_FINISH = text(
    """
WITH sent AS (
    UPDATE notices SET status = 'sent', sent_at = :now, done_at = :now, provider_id = :provider_id,
        attempts = :attempts
    WHERE id = ANY(CAST(:sent_ids AS bigint[])) AND status = 'pending'
    RETURNING id
), quiet AS (
    UPDATE notices SET status = 'suppressed', reason = q.reason, done_at = :now, attempts = :attempts
    FROM unnest(CAST(:quiet_ids AS bigint[]), CAST(:quiet_reasons AS text[])) AS q(id, reason)
    WHERE notices.id = q.id AND notices.status = 'pending'
    RETURNING notices.id
), counted AS (
    UPDATE incidents SET notices = notices + (SELECT count(*) FROM sent)
    WHERE id = :incident_id
    RETURNING id
), ended AS (
    UPDATE notice_letters SET status = :status, attempts = :attempts, sent_at = :sent_at,
        provider_id = :provider_id, sent_via = :via, detail = :detail
    WHERE id = :letter AND NOT EXISTS (
        SELECT 1 FROM notices
        WHERE letter_id = :letter AND status = 'pending' AND id <> ALL(CAST(:read_ids AS bigint[]))
    )
    RETURNING id
)
UPDATE notice_letters SET attempts = 0, next_attempt_at = :now
WHERE id = :letter AND NOT EXISTS (SELECT 1 FROM ended)
RETURNING id
"""
)


def _pg_finish_params(outcome: LetterOutcome) -> dict[str, Any]:
    letter, sent, quiet, delivered = outcome.letter, outcome.sent, outcome.quiet, outcome.delivered
    now = outcome.now
    return {
        "now": now,
        "attempts": outcome.attempts,
        "letter": letter.letter_id,
        "incident_id": letter.incident_id if delivered is not None else None,
        "sent_ids": list(sent) if delivered is not None else [],
        "quiet_ids": [i for i, _ in quiet],
        "quiet_reasons": [why[:200] for _, why in quiet],
        "read_ids": [*sent, *(i for i, _ in quiet)],
        "status": SUPPRESSED if delivered is None else SENT,
        "sent_at": now if delivered is not None else None,
        "provider_id": delivered.provider_id[:300] if delivered is not None else None,
        "via": delivered.via if delivered is not None else None,
        "detail": (delivered.detail[:200] or None) if delivered is not None else None,
    }


# The same two statements run straight on a psycopg connection in autocommit mode: the send path
# is the outbox's hot loop, and SQLAlchemy's execution layer costs more CPU than the round trips
# (as in orders.fast_path). Compiled once from the statements above, so the SQL is written once.
_PG_DIALECT = postgresql.psycopg.dialect()
_PG_LETTER = _LETTER_TO_SEND.compile(dialect=_PG_DIALECT)
_PG_LETTER_SQL, _PG_LETTER_PARAMS = str(_PG_LETTER), dict(_PG_LETTER.params)  # the literal 'pending'

_PG_FINISH_SQL = str(_PG_FINISH.compile(dialect=_PG_DIALECT))


def letter_to_send_pg(cur: Any, letter_id: int) -> LetterToSend | None:
    """`letter_to_send` on a psycopg cursor (autocommit)."""
    cur.execute(_PG_LETTER_SQL, {**_PG_LETTER_PARAMS, "p_letter": letter_id})
    return _letter_of_rows(letter_id, cur.fetchall())


def finish_letter_pg(cur: Any, outcome: LetterOutcome) -> bool:
    """`finish_letter` on a psycopg cursor (autocommit: the one statement is its own transaction)."""
    cur.execute(_PG_FINISH_SQL, _pg_finish_params(outcome))
    return cur.fetchone() is None

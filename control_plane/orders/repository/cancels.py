"""Cancels owed to DCs that may hold a copy of an order that now lives elsewhere (the outbox rows)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from control_plane.store.tables import DcCancelRow


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


def pending_cancel(session: Session, order_id: str, site: str) -> DcCancelRow | None:
    row = session.get(DcCancelRow, (order_id, site))
    return row if row is not None and row.status == "pending" else None


def queue_cancel(
    session: Session, order_id: str, site: str, reason: str, now: datetime, not_before: datetime
) -> None:
    """Owe the DC at `site` a cancel (the outbox sends it), not sent by the outbox before `not_before`.

    Queued in the transaction that decides the cancel, before the synchronous call, so a crash
    between the two leaves the outbox to finish it; `not_before` keeps the outbox from sending the
    same cancel while the synchronous call is out.
    """
    add_cancel(session, order_id, site, reason, now)
    row = session.get(DcCancelRow, (order_id, site))
    assert row is not None
    row.next_attempt_at = not_before


def finish_cancel(session: Session, order_id: str, site: str, status: str, note: str, now: datetime) -> bool:
    """Close a pending cancel as `done` or `conflict`; False when none was pending."""
    row = pending_cancel(session, order_id, site)
    if row is None:
        return False
    row.status, row.done_at, row.last_error = status, now, note[:2000]
    row.attempts += 1
    return True


def release_cancel_lease(session: Session, order_id: str, site: str, now: datetime) -> None:
    """Let the outbox send a pending cancel at once (the synchronous call got no answer)."""
    row = pending_cancel(session, order_id, site)
    if row is not None:
        row.next_attempt_at = now

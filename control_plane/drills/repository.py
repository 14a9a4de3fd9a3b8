"""Drill runs in the store."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from control_plane.domain import NotFound
from control_plane.store.tables import DrillRunRow


def add_run(
    session: Session, experiment: str, subject: str, who: str, now: datetime, forced_reason: str | None
) -> DrillRunRow:
    row = DrillRunRow(
        experiment=experiment, subject=subject, status="running", started_by=who, started_at=now,
        heartbeat_at=now, forced_reason=forced_reason, deviations=[],
    )  # fmt: skip
    session.add(row)
    session.flush()
    return row


def get_run(session: Session, run_id: int, for_update: bool = False) -> DrillRunRow:
    stmt = select(DrillRunRow).where(DrillRunRow.id == run_id)
    if for_update and session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = session.scalar(stmt)
    if row is None:
        raise NotFound(f"no drill {run_id}")
    return row


def list_runs(session: Session, status: str | None, subject: str | None, limit: int) -> list[DrillRunRow]:
    stmt = select(DrillRunRow).order_by(DrillRunRow.id.desc()).limit(limit)
    if status is not None:
        stmt = stmt.where(DrillRunRow.status == status)
    if subject is not None:
        stmt = stmt.where(DrillRunRow.subject == subject)
    return list(session.scalars(stmt))


def request_abort(session: Session, now: datetime, reason: str) -> list[int]:
    """Mark every running drill to stop; the ids marked (one statement: no drill is missed)."""
    stmt = (
        update(DrillRunRow)
        .where(DrillRunRow.status == "running", DrillRunRow.abort_requested_at.is_(None))
        .values(abort_requested_at=now, abort_reason=reason)
        .returning(DrillRunRow.id)
    )
    return sorted(session.scalars(stmt))

"""Runbook executions, their step runs and the kill switch: the area's only queries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from control_plane.store.db import is_postgresql
from control_plane.store.tables import (
    ChannelRow,
    IncidentEventRow,
    IncidentRow,
    IntegrationRow,
    RunbookExecutionRow,
    RunbookSwitchRow,
    SiteRow,
    StepRunRow,
)

LIVE = ("running", "waiting_approval", "rolling_back")


def add_execution(
    session: Session,
    runbook: str,
    params: dict[str, Any],
    status: str,
    started_by: str,
    now: datetime,
    dry_run: bool = False,
    incident_id: int | None = None,
    trigger_key: str | None = None,
    trigger: dict[str, Any] | None = None,
) -> RunbookExecutionRow | None:
    """A new execution; None when `trigger_key` started one already (in a savepoint, so the
    caller's transaction goes on)."""
    row = RunbookExecutionRow(
        runbook=runbook,
        params=params,
        status=status,
        cursor=0,
        dry_run=dry_run,
        started_by=started_by,
        started_at=now,
        updated_at=now,
        incident_id=incident_id,
        trigger_key=trigger_key,
        trigger=trigger,
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return None
    return row


def get_execution(session: Session, execution_id: int, lock: bool = False) -> RunbookExecutionRow | None:
    stmt = select(RunbookExecutionRow).where(RunbookExecutionRow.id == execution_id)
    if lock and is_postgresql(session):
        stmt = stmt.with_for_update()
    return session.scalar(stmt)


def list_executions(
    session: Session, status: str | None, runbook: str | None, limit: int
) -> list[RunbookExecutionRow]:
    stmt = select(RunbookExecutionRow).order_by(RunbookExecutionRow.id.desc()).limit(limit)
    if status is not None:
        stmt = stmt.where(RunbookExecutionRow.status == status)
    if runbook is not None:
        stmt = stmt.where(RunbookExecutionRow.runbook == runbook)
    return list(session.scalars(stmt))


def live_execution_ids(session: Session) -> list[int]:
    stmt = (
        select(RunbookExecutionRow.id)
        .where(RunbookExecutionRow.status.in_(LIVE))
        .order_by(RunbookExecutionRow.id)
    )
    return list(session.scalars(stmt))


def claim(session: Session, execution_id: int, owner: str, now: datetime, until: datetime) -> bool:
    """Take the execution for `owner` until `until`, unless another process holds an unexpired lease."""
    free = or_(
        RunbookExecutionRow.lease_until.is_(None),
        RunbookExecutionRow.lease_until < now,
        RunbookExecutionRow.lease_owner == owner,
    )
    stmt = (
        update(RunbookExecutionRow)
        .where(RunbookExecutionRow.id == execution_id, free)
        .values(lease_owner=owner, lease_until=until)
    )
    return session.execute(stmt).rowcount == 1  # type: ignore[attr-defined]


def release(session: Session, execution_id: int, owner: str) -> None:
    stmt = (
        update(RunbookExecutionRow)
        .where(RunbookExecutionRow.id == execution_id, RunbookExecutionRow.lease_owner == owner)
        .values(lease_owner=None, lease_until=None)
    )
    session.execute(stmt)


def step_runs(session: Session, execution_id: int) -> list[StepRunRow]:
    stmt = (
        select(StepRunRow)
        .where(StepRunRow.execution_id == execution_id)
        .order_by(StepRunRow.started_at, StepRunRow.id)
    )
    return list(session.scalars(stmt))


def step_run(session: Session, execution_id: int, phase: str, position: int) -> StepRunRow | None:
    stmt = select(StepRunRow).where(
        StepRunRow.execution_id == execution_id, StepRunRow.phase == phase, StepRunRow.position == position
    )
    return session.scalar(stmt)


def switch(session: Session, lock: bool = False) -> RunbookSwitchRow:
    """The kill switch's row (created on first use)."""
    stmt = select(RunbookSwitchRow).where(RunbookSwitchRow.id == 1)
    if lock and is_postgresql(session):
        stmt = stmt.with_for_update()
    row = session.scalar(stmt)
    if row is None:
        row = RunbookSwitchRow(id=1, paused=False)
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:  # another replica created it meanwhile
            row = session.scalars(select(RunbookSwitchRow).where(RunbookSwitchRow.id == 1)).one()
    return row


def world_names(session: Session) -> dict[str, set[str]]:
    """The codes a runbook parameter of each world type may take."""
    return {
        "site": set(session.scalars(select(SiteRow.code))),
        "channel": set(session.scalars(select(ChannelRow.code))),
        "integration": set(session.scalars(select(IntegrationRow.code))),
    }


_SETTABLE: dict[str, tuple[type[Any], set[str]]] = {
    "channel": (ChannelRow, {"paused"}),
    "site": (SiteRow, {"capacity_per_hour"}),
    "integration": (IntegrationRow, {"forced_down"}),
}


def set_field(session: Session, kind: str, code: str, field: str, value: Any) -> Any:
    """Set a runbook-settable field of a channel, site or integration; its previous value, or None
    when there is no such one."""
    table, fields = _SETTABLE[kind]
    assert field in fields, f"{kind}.{field} is not settable by a runbook"
    row = session.get(table, code)
    if row is None:
        return None
    before = getattr(row, field)
    setattr(row, field, value)
    return before


def incident_resolved(session: Session, incident_id: int) -> bool:
    row = session.get(IncidentRow, incident_id)
    return row is not None and row.status == "resolved"


def incident_note_exists(session: Session, incident_id: int, key: str) -> bool:
    """Whether a note with this idempotency key is on the incident (a resumed step's first try)."""
    events: Sequence[IncidentEventRow] = session.scalars(
        select(IncidentEventRow).where(
            IncidentEventRow.incident_id == incident_id, IncidentEventRow.kind == "runbook_note"
        )
    ).all()
    return any((e.data or {}).get("key") == key for e in events)

"""Incidents with their timeline, site changes and the routing switch, and the audit log read back."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from control_plane.domain import NotFound, Recovery
from control_plane.store.tables import AuditEventRow, IncidentEventRow, IncidentRow, SiteChangeRow, SiteRow
from control_plane.world import repository as world_repo


def open_incident(
    session: Session, kind: str, subject: str, trigger: str, title: str, now: datetime, affected: int = 0
) -> IncidentRow:
    row = IncidentRow(
        kind=kind,
        subject=subject,
        trigger=trigger,
        title=title,
        status="open",
        started_at=now,
        detected_at=now,
        orders_affected=affected,
        orders_rerouted=0,
        orders_held=0,
        notices=0,
    )
    session.add(row)
    session.flush()
    add_event(session, row.id, now, "opened", title)
    return row


def add_event(
    session: Session,
    incident_id: int,
    now: datetime,
    kind: str,
    message: str,
    data: dict[str, Any] | None = None,
) -> None:
    session.add(IncidentEventRow(incident_id=incident_id, at=now, kind=kind, message=message, data=data))


def open_incident_for(session: Session, subject: str) -> IncidentRow | None:
    return session.scalar(
        select(IncidentRow)
        .where(IncidentRow.subject == subject, IncidentRow.status != "resolved")
        .order_by(IncidentRow.started_at.desc())
        .limit(1)
    )


def lock_subject(session: Session, subject: str) -> None:
    """Serialise open-or-join of a subject's incident until the transaction ends.

    Without it two writers (the alert hook and an operator, two replicas) could both find no open
    incident and open two. SQLite transactions are serialised already (BEGIN IMMEDIATE).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"drctl.incident:{subject}"}
        )


def ensure_open_incident(
    session: Session, kind: str, subject: str, trigger: str, title: str, now: datetime, affected: int = 0
) -> IncidentRow:
    """The subject's unresolved incident, or a new one: one incident per outage, whoever saw it first."""
    lock_subject(session, subject)
    return open_incident_for(session, subject) or open_incident(
        session, kind, subject, trigger, title, now, affected
    )


def get_incident(session: Session, incident_id: int) -> tuple[IncidentRow, list[IncidentEventRow]]:
    row = session.get(IncidentRow, incident_id)
    if row is None:
        raise NotFound(f"no incident {incident_id}")
    events = session.scalars(
        select(IncidentEventRow)
        .where(IncidentEventRow.incident_id == incident_id)
        .order_by(IncidentEventRow.id)
    )
    return row, list(events)


def list_incidents(session: Session, status: str | None, limit: int) -> list[IncidentRow]:
    stmt = select(IncidentRow).order_by(IncidentRow.started_at.desc()).limit(limit)
    if status is not None:
        stmt = stmt.where(IncidentRow.status == status)
    return list(session.scalars(stmt))


def list_audit(session: Session, limit: int, action: str | None = None) -> list[AuditEventRow]:
    stmt = select(AuditEventRow).order_by(AuditEventRow.id.desc()).limit(limit)
    if action is not None:
        stmt = stmt.where(AuditEventRow.action == action)
    return list(session.scalars(stmt))


def open_count(session: Session) -> int:
    """Incidents not yet resolved (open or mitigated)."""
    return int(session.scalar(select(func.count()).where(IncidentRow.status != "resolved")) or 0)


def resolve(session: Session, incident: IncidentRow, now: datetime, message: str) -> None:
    incident.status, incident.resolved_at = "resolved", now
    add_event(session, incident.id, now, "resolved", message)
    site = session.get(SiteRow, incident.subject) if incident.kind == "site_outage" else None
    if site is not None:
        # a real outage is a measurement too: start to resolved, against the RTO it had then
        def since_start(t: datetime | None) -> float | None:
            return None if t is None else max(0.0, (t - incident.started_at).total_seconds())

        recover_s = since_start(now) or 0.0
        rto_s = None if site.rto_hours is None else site.rto_hours * 3600
        measured = Recovery(
            site.code, "incident", incident.id, now, recover_s,
            since_start(incident.detected_at), since_start(incident.mitigated_at), rto_s,
        )  # fmt: skip
        world_repo.record_recovery(session, measured)


# --- site changes (one running per site: a partial unique index) and the routing switch ---


def take_over_stale_change(session: Session, site: str, now: datetime) -> SiteChangeRow | None:
    """Mark failed a running change of `site` whose lease ran out (its process died); return it."""
    stmt = select(SiteChangeRow).where(SiteChangeRow.site == site, SiteChangeRow.status == "running")
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = session.scalar(stmt)
    if row is None or row.lease_until is None or row.lease_until > now:
        return None
    row.status, row.finished_at = "failed", now
    row.result = {**(row.result or {}), "error": "its lease ran out (the process died?): taken over"}
    session.flush()
    return row


def start_change(
    session: Session,
    site: str,
    kind: str,
    actor: str,
    reason: str,
    forced: bool,
    now: datetime,
    lease_s: float,
) -> int:
    """Insert a running change; IntegrityError when another change of the site is running."""
    row = SiteChangeRow(
        site=site,
        kind=kind,
        status="running",
        actor=actor,
        reason=reason,
        forced=forced,
        started_at=now,
        lease_until=now + timedelta(seconds=lease_s),
    )
    session.add(row)
    session.flush()
    return row.id


def renew_change(session: Session, change_id: int, now: datetime, lease_s: float) -> bool:
    """Extend a running change's lease; False when it is no longer ours (taken over)."""
    row = session.get(SiteChangeRow, change_id)
    if row is None or row.status != "running":
        return False
    row.lease_until = now + timedelta(seconds=lease_s)
    return True


def finish_change(
    session: Session, change_id: int, status: str, result: dict[str, Any] | None, now: datetime
) -> None:
    row = session.get(SiteChangeRow, change_id)
    if row is not None and row.status == "running":
        row.status, row.result, row.finished_at = status, result, now


def last_change(session: Session, site: str, kind: str) -> SiteChangeRow | None:
    stmt = (
        select(SiteChangeRow)
        .where(SiteChangeRow.site == site, SiteChangeRow.kind == kind)
        .order_by(SiteChangeRow.id.desc())
        .limit(1)
    )
    return session.scalar(stmt)


def switch_routing(
    session: Session,
    code: str,
    accepting: bool,
    now: datetime,
    ramp_s: float = 0.0,
    expires_at: datetime | None = None,
) -> None:
    """Take the site out of routing (until `expires_at`, if given), or put it back (ramping from
    10 % over `ramp_s` when > 0; any expiry ends).

    The row is locked FOR UPDATE first: see `site_row`.
    """
    row = site_row(session, code, lock=True)
    if row is None:
        raise NotFound(f"no site {code!r}")
    row.accepting, row.updated_at = accepting, now
    if accepting:
        row.ramp_started_at, row.ramp_duration_s = (now, ramp_s) if ramp_s > 0 else (None, None)
        row.failover_expires_at = row.failback_proposed_at = None
    elif expires_at is not None:
        row.failover_expires_at, row.failback_proposed_at = expires_at, None


def expired_failovers(session: Session, now: datetime) -> list[SiteRow]:
    """Sites out of routing whose failover's expiry has passed, oldest expiry first."""
    stmt = (
        select(SiteRow)
        .where(SiteRow.accepting.is_(False), SiteRow.failover_expires_at <= now)
        .order_by(SiteRow.failover_expires_at)
    )
    return list(session.scalars(stmt))


def count_moves(session: Session, incident_id: int, moved: int, held: int, now: datetime) -> None:
    """Add a failover's moved and held orders to its incident, mitigated from the first move on."""
    incident = session.get(IncidentRow, incident_id)
    if incident is None:
        return
    incident.orders_rerouted += moved
    incident.orders_held += held
    if incident.mitigated_at is None:
        incident.mitigated_at, incident.status = now, "mitigated"


def site_row(session: Session, code: str, lock: bool = False) -> SiteRow | None:
    """The site's row; `lock` takes it FOR UPDATE on PostgreSQL, which waits for every placement
    holding its key-share lock (orders.repository.site_open) and holds later ones back."""
    return session.get(SiteRow, code, with_for_update=lock or None)

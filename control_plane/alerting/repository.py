"""Stored alert state of the built-in engine, silences, and the alert-delivery outbox."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from control_plane.alerting.engine import AlertState, AlertStatus, Notification, NotificationKind
from control_plane.alerting.silence_rules import Matcher, Silence
from control_plane.store.tables import AlertDeliveryRow, AlertRow, SilenceRow

# --- alert state -------------------------------------------------------------------------------


def load_states(session: Session) -> dict[str, AlertState]:
    return {r.fingerprint: _state(r) for r in session.scalars(select(AlertRow).with_for_update())}


def save_states(session: Session, old: Mapping[str, AlertState], new: Mapping[str, AlertState]) -> None:
    """Write what changed between two ticks: upsert changed states, delete dropped ones."""
    gone = [fp for fp in old if fp not in new]
    if gone:
        session.execute(delete(AlertRow).where(AlertRow.fingerprint.in_(gone)))
    for fp, state in new.items():
        if old.get(fp) == state:
            continue
        row = session.get(AlertRow, fp) or AlertRow(fingerprint=fp)
        row.alertname, row.labels, row.annotations = (
            state.alertname,
            dict(state.labels),
            dict(state.annotations),
        )
        row.status, row.value, row.active_since = state.status.value, state.value, state.active_since
        row.fired_at, row.last_notified_at, row.resolved_at = (
            state.fired_at,
            state.last_notified_at,
            state.resolved_at,
        )
        row.silenced_by = list(state.silenced_by)
        session.add(row)


def list_alerts(session: Session, status: str | None = None) -> list[AlertRow]:
    stmt = select(AlertRow).order_by(AlertRow.active_since.desc())
    if status is not None:
        stmt = stmt.where(AlertRow.status == status)
    return list(session.scalars(stmt))


def get_alert(session: Session, fingerprint: str) -> AlertRow | None:
    return session.get(AlertRow, fingerprint)


def firing_counts(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(AlertRow.alertname, func.count())
        .where(AlertRow.status == AlertStatus.FIRING.value)
        .group_by(AlertRow.alertname)
    )
    return {name: int(n) for name, n in rows}


def _state(row: AlertRow) -> AlertState:
    return AlertState(
        fingerprint=row.fingerprint,
        labels=dict(row.labels),
        annotations=dict(row.annotations),
        status=AlertStatus(row.status),
        active_since=row.active_since,
        value=row.value,
        fired_at=row.fired_at,
        last_notified_at=row.last_notified_at,
        resolved_at=row.resolved_at,
        silenced_by=tuple(row.silenced_by or ()),
    )


# --- silences ----------------------------------------------------------------------------------


def matcher_to_json(m: Matcher) -> dict[str, Any]:
    return {"name": m.name, "value": m.value, "isRegex": m.is_regex, "isEqual": m.is_equal}


def matcher_from_json(d: Mapping[str, Any]) -> Matcher:
    return Matcher(d["name"], d["value"], bool(d.get("isRegex", False)), bool(d.get("isEqual", True)))


def silence_from_row(row: SilenceRow) -> Silence:
    return Silence(
        id=row.id,
        matchers=tuple(matcher_from_json(m) for m in row.matchers),
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        created_by=row.created_by,
        comment=row.comment or "",
    )


def add_silence(session: Session, silence: Silence, now: datetime) -> SilenceRow:
    row = SilenceRow(
        id=silence.id,
        matchers=[matcher_to_json(m) for m in silence.matchers],
        starts_at=silence.starts_at,
        ends_at=silence.ends_at,
        created_by=silence.created_by,
        comment=silence.comment,
        created_at=now,
    )
    session.add(row)
    return row


def get_silence(session: Session, silence_id: str) -> SilenceRow | None:
    return session.get(SilenceRow, silence_id)


def list_silences(session: Session, include_expired: bool, now: datetime) -> list[SilenceRow]:
    stmt = select(SilenceRow).order_by(SilenceRow.starts_at.desc())
    if not include_expired:
        stmt = stmt.where(SilenceRow.ends_at > now)
    return list(session.scalars(stmt))


def current_silences(session: Session, now: datetime) -> list[Silence]:
    """Silences not yet ended (future ones included: they start muting on their own)."""
    return [silence_from_row(r) for r in list_silences(session, include_expired=False, now=now)]


# --- delivery outbox ---------------------------------------------------------------------------


def notification_to_json(note: Notification) -> dict[str, Any]:
    return {
        "kind": note.kind.value,
        "fingerprint": note.fingerprint,
        "labels": dict(note.labels),
        "annotations": dict(note.annotations),
        "starts_at": note.starts_at.isoformat(),
        "ends_at": note.ends_at.isoformat() if note.ends_at else None,
    }


def add_deliveries(session: Session, note: Notification, channels: Iterable[str], now: datetime) -> None:
    payload = notification_to_json(note)
    for channel in channels:
        session.add(
            AlertDeliveryRow(
                fingerprint=note.fingerprint,
                alertname=note.labels.get("alertname", ""),
                kind=note.kind.value,
                channel=channel,
                payload=payload,
                status="pending",
                attempts=0,
                created_at=now,
                next_attempt_at=now,
            )
        )


def list_deliveries(
    session: Session, fingerprint: str | None = None, limit: int = 200
) -> list[AlertDeliveryRow]:
    stmt = select(AlertDeliveryRow).order_by(AlertDeliveryRow.id.desc()).limit(limit)
    if fingerprint is not None:
        stmt = stmt.where(AlertDeliveryRow.fingerprint == fingerprint)
    return list(session.scalars(stmt))


def notification_from_json(d: Mapping[str, Any]) -> Notification:
    ends = d.get("ends_at")
    return Notification(
        kind=NotificationKind(d["kind"]),
        fingerprint=d["fingerprint"],
        labels=dict(d["labels"]),
        annotations=dict(d["annotations"]),
        starts_at=datetime.fromisoformat(d["starts_at"]),
        ends_at=datetime.fromisoformat(ends) if ends else None,
    )

"""Alerts become incidents: one code path for the built-in engine and Alertmanager's webhook.

A firing alert about a site, an integration or capacity opens (or joins) the subject's incident
and adds an `alert_firing` event; repeats of the same episode (Alertmanager re-sends every
`repeat_interval`) add nothing. A resolved alert adds `alert_resolved`; when no alert of the
incident is still firing, the incident is resolved, except a site that was failed over, which
stays open until an operator fails it back (routing is still off there).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from control_plane.auth.repository import audit
from control_plane.operations import repository as incident_repo
from control_plane.store.tables import IncidentEventRow, SiteRow

log = logging.getLogger("drctl.alert_incidents")

# alertname -> (incident kind, label naming the subject); a fixed subject when the label is absent
SUBJECTS: Mapping[str, tuple[str, str]] = {
    "SiteDown": ("site_outage", "site"),
    "BreakerOpen": ("site_outage", "breaker"),
    "IntegrationDown": ("integration_outage", "integration"),
    "BackupCapacityHigh": ("capacity", "site"),
    "FailoverExpired": ("site_outage", "site"),
    "OrdersHeld": ("capacity", "orders-held"),
}
FIRING_KIND = "alert_firing"
RESOLVED_KIND = "alert_resolved"


@dataclass(frozen=True, slots=True)
class AlertEvent:
    alertname: str
    status: Literal["firing", "resolved"]
    fingerprint: str
    starts_at: datetime
    labels: Mapping[str, str] = field(default_factory=dict)
    summary: str = ""
    ends_at: datetime | None = None
    source: str = "builtin"  # builtin | alertmanager


@dataclass(frozen=True, slots=True)
class Outcome:
    fingerprint: str
    alertname: str
    action: str  # opened | joined | repeat | resolved_event | resolved_incident | ignored
    incident_id: int | None = None
    reason: str = ""


# what an alert firing may start (runbooks), in the transaction that records it on its incident:
# (session, alertname, fingerprint, starts_at, incident kind, labels, incident id, now)
AlertHook = Callable[
    [Session, str, str, datetime, "str | None", Mapping[str, str], "int | None", datetime], object
]


def after_alert(
    hook: AlertHook | None, session: Session, event: AlertEvent, outcome: Outcome, now: datetime
) -> None:
    """Call the hook for an alert that newly fired on an incident (not a repeat, not a resolve)."""
    if hook is None or event.status != "firing" or outcome.action not in ("opened", "joined"):
        return
    found = subject_of(event)
    hook(session, event.alertname, event.fingerprint, event.starts_at, found[0] if found else None,
         event.labels, outcome.incident_id, now)  # fmt: skip


def subject_of(event: AlertEvent) -> tuple[str, str] | None:
    """(incident kind, subject) for an alert that concerns one, else None."""
    mapping = SUBJECTS.get(event.alertname)
    if mapping is None:
        return None
    kind, label = mapping
    if label in {"site", "breaker", "integration"}:
        subject = event.labels.get(label)
        return (kind, subject) if subject else None
    return kind, label


def apply_alert_event(session: Session, event: AlertEvent, now: datetime) -> Outcome:
    """Record one alert event on its incident (the caller's transaction commits)."""
    found = subject_of(event)
    if found is None:
        return Outcome(event.fingerprint, event.alertname, "ignored", reason="no incident subject")
    kind, subject = found
    data = {
        "alertname": event.alertname,
        "fingerprint": event.fingerprint,
        "source": event.source,
        "labels": dict(event.labels),
        "starts_at": event.starts_at.isoformat(),
    }
    incident_repo.lock_subject(session, subject)
    incident = incident_repo.open_incident_for(session, subject)
    if event.status == "firing":
        if incident is not None and _last_status(session, incident.id).get(event.fingerprint) == FIRING_KIND:
            return Outcome(event.fingerprint, event.alertname, "repeat", incident.id)
        action = "joined"
        if incident is None:
            title = event.summary or f"{event.alertname} {subject}"
            incident = incident_repo.open_incident(session, kind, subject, "alert", title, now)
            incident.started_at = min(event.starts_at, now)
            action = "opened"
        message = f"{event.alertname} firing ({event.source}): {event.summary or subject}"
        incident_repo.add_event(session, incident.id, now, FIRING_KIND, message, data)
        log.warning("incident %s: %s", incident.id, message)
        return Outcome(event.fingerprint, event.alertname, action, incident.id)

    if incident is None:
        return Outcome(event.fingerprint, event.alertname, "ignored", reason="no open incident")
    statuses = _last_status(session, incident.id)
    if event.fingerprint not in statuses:
        return Outcome(
            event.fingerprint, event.alertname, "ignored", incident.id, "alert not on this incident"
        )
    if statuses[event.fingerprint] == RESOLVED_KIND:
        return Outcome(event.fingerprint, event.alertname, "repeat", incident.id)
    message = f"{event.alertname} resolved ({event.source})"
    incident_repo.add_event(session, incident.id, now, RESOLVED_KIND, message, data)
    statuses[event.fingerprint] = RESOLVED_KIND
    if any(s == FIRING_KIND for s in statuses.values()):
        return Outcome(
            event.fingerprint, event.alertname, "resolved_event", incident.id, "other alerts firing"
        )
    if kind == "site_outage" and not _accepting(session, subject):
        reason = "the site is failed over: it stays open until failback"
        incident_repo.add_event(session, incident.id, now, "awaiting_failback", reason)
        return Outcome(event.fingerprint, event.alertname, "resolved_event", incident.id, reason)
    incident_repo.resolve(session, incident, now, "every alert of the incident resolved")
    log.warning("incident %s resolved: its alerts cleared", incident.id)
    return Outcome(event.fingerprint, event.alertname, "resolved_incident", incident.id)


def _last_status(session: Session, incident_id: int) -> dict[str, str]:
    """Fingerprint -> the kind of its latest alert event on the incident."""
    rows = session.scalars(
        select(IncidentEventRow)
        .where(
            IncidentEventRow.incident_id == incident_id,
            IncidentEventRow.kind.in_((FIRING_KIND, RESOLVED_KIND)),
        )
        .order_by(IncidentEventRow.id)
    )
    last: dict[str, str] = {}
    for row in rows:
        fp = (row.data or {}).get("fingerprint")
        if fp:
            last[str(fp)] = row.kind
    return last


def _accepting(session: Session, site: str) -> bool:
    row = session.get(SiteRow, site)
    return row is None or bool(row.accepting)


def receive_webhook(
    session: Session,
    actor: str,
    events: Sequence[AlertEvent],
    group_key: str,
    now: datetime,
    hook: AlertHook | None = None,
) -> list[Outcome]:
    """Apply every alert of one Alertmanager notification, audited as one change."""
    outcomes = []
    for e in events:
        outcome = apply_alert_event(session, e, now)
        after_alert(hook, session, e, outcome, now)
        outcomes.append(outcome)
    changed = [o for o in outcomes if o.action not in ("repeat", "ignored")]
    if changed:
        audit(
            session,
            now,
            actor,
            "alertmanager.notification",
            f"alertmanager:{group_key}"[:200],
            None,
            {
                "outcomes": [
                    {"alertname": o.alertname, "action": o.action, "incident": o.incident_id} for o in changed
                ]
            },
        )
    return outcomes

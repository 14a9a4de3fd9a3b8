"""How a notification reads, the same on every channel: subject line, plain text, Slack payload."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from control_plane.alerting.engine import Notification, NotificationKind

# shown in the subject's own slots (name) or in the body only (severity)
_NOT_IN_SUBJECT = frozenset({"alertname", "severity"})
_KNOWN_ANNOTATIONS = ("summary", "description")


def subject(note: Notification) -> str:
    """One line, e.g. `[FIRING] SiteDown site=icheon: DC icheon is down`."""
    tag = "RESOLVED" if note.kind is NotificationKind.RESOLVED else "FIRING"
    shown = " ".join(f"{k}={v}" for k, v in sorted(note.labels.items()) if k not in _NOT_IN_SUBJECT)
    line = f"[{tag}] {_alertname(note)}" + (f" {shown}" if shown else "")
    summary = note.annotations.get("summary", "")
    if summary:
        line += f": {summary}"
    if note.kind is NotificationKind.REPEAT:
        line += " (repeat)"
    # a line break in a label or summary would break an email header or an SNS subject
    return " ".join(line.split())


def text(note: Notification) -> str:
    """The plain-text body: the subject line (it carries the summary), description, labels, times."""
    lines = [subject(note), ""]
    description = note.annotations.get("description", "")
    if description:
        lines += [description, ""]
    lines += [f"Status: {_status(note)}", "Labels:"]
    lines += [f"  {k}={v}" for k, v in sorted(note.labels.items())]
    extra = _extra_annotations(note.annotations)
    if extra:
        lines.append("Annotations:")
        lines += [f"  {k}: {v}" for k, v in extra.items()]
    lines.append(f"Started: {iso_utc(note.starts_at)}")
    if note.ends_at is not None:
        lines.append(f"Ended: {iso_utc(note.ends_at)}")
    lines.append(f"Fingerprint: {note.fingerprint}")
    return "\n".join(lines) + "\n"


def slack_payload(note: Notification) -> dict[str, Any]:
    """A Slack incoming-webhook body, plus a `drctl` object so machine receivers need not parse text."""
    fields = [{"title": k, "value": _slack_escape(v), "short": True} for k, v in sorted(note.labels.items())]
    fields.append({"title": "started", "value": iso_utc(note.starts_at), "short": True})
    if note.ends_at is not None:
        fields.append({"title": "ended", "value": iso_utc(note.ends_at), "short": True})
    title = _slack_escape(subject(note))
    return {
        "text": title,
        "attachments": [
            {
                "fallback": title,
                "color": "good" if note.kind is NotificationKind.RESOLVED else "danger",
                "title": title,
                "text": _slack_escape(note.annotations.get("description", "")),
                "fields": fields,
                "footer": f"drctl fingerprint {note.fingerprint}",
                "ts": int(_utc(note.starts_at).timestamp()),
            }
        ],
        "drctl": {
            "kind": str(note.kind),
            "fingerprint": note.fingerprint,
            "labels": dict(note.labels),
            "annotations": dict(note.annotations),
            "starts_at": iso_utc(note.starts_at),
            "ends_at": iso_utc(note.ends_at) if note.ends_at is not None else None,
        },
    }


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, to the second (e.g. `2026-11-23T12:00:00Z`)."""
    return _utc(moment).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _utc(moment: datetime) -> datetime:
    # SQLite hands datetimes back naive; the store writes them in UTC
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _alertname(note: Notification) -> str:
    return note.labels.get("alertname", "alert")


def _status(note: Notification) -> str:
    return "firing (repeat)" if note.kind is NotificationKind.REPEAT else str(note.kind)


def _extra_annotations(annotations: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in sorted(annotations.items()) if k not in _KNOWN_ANNOTATIONS and v}


def _slack_escape(value: str) -> str:
    # Slack reads <...> as links and mentions (<!channel>): a label must not page a whole channel
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

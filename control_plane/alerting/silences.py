"""Create, list and expire silences of the built-in alert engine (audited)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from control_plane.alerting import repository as alert_repo
from control_plane.alerting.silence_rules import Matcher, Silence
from control_plane.auth.repository import audit
from control_plane.domain import Conflict, NotFound
from control_plane.store.tables import SilenceRow


def silence_json(row: SilenceRow, now: datetime) -> dict[str, Any]:
    state = "expired" if row.ends_at <= now else ("active" if row.starts_at <= now else "pending")
    return {
        "id": row.id,
        "matchers": row.matchers,
        "starts_at": row.starts_at.isoformat(),
        "ends_at": row.ends_at.isoformat(),
        "created_by": row.created_by,
        "comment": row.comment,
        "state": state,
    }


def create_silence(
    session: Session,
    actor: str,
    matchers: Sequence[Matcher],
    starts_at: datetime,
    ends_at: datetime,
    comment: str,
    now: datetime,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Store a silence (validated by the domain: matchers, window) and audit it."""
    silence = Silence(str(uuid.uuid4()), tuple(matchers), starts_at, ends_at, actor, comment)
    row = alert_repo.add_silence(session, silence, now)
    out = silence_json(row, now)
    audit(session, now, actor, "silence.create", f"silence:{row.id}", None, out, comment, idempotency_key)
    return out


def expire_silence(session: Session, actor: str, silence_id: str, now: datetime) -> dict[str, Any]:
    """End a silence now; its alerts notify again from the next evaluation."""
    row = alert_repo.get_silence(session, silence_id)
    if row is None:
        raise NotFound(f"no silence {silence_id!r}")
    if row.ends_at <= now:
        raise Conflict(f"silence {silence_id} has already ended", rule="silence_expired")
    before = silence_json(row, now)
    row.starts_at, row.ends_at = min(row.starts_at, now), now
    after = silence_json(row, now)
    audit(session, now, actor, "silence.expire", f"silence:{row.id}", before, after)
    return after

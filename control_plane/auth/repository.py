"""API tokens (stored as SHA-256 hashes; the token itself is shown once) and the audit log."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from control_plane.domain import Conflict, NotFound
from control_plane.store.tables import ApiTokenRow, AuditEventRow

ROLES = ("viewer", "ingest", "operator", "admin")  # each may do what the ones before it may
HOOK = "hook"  # Alertmanager's webhook and nothing else: not in the ladder above
ALL_ROLES = (*ROLES, HOOK)
TOKEN_PREFIX = "drctl_"
TOUCH_EVERY = timedelta(seconds=60)  # last_used_at is kept to the minute, not written per request


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    session: Session,
    name: str,
    role: str,
    now: datetime,
    expires_at: datetime | None = None,
    channels: Sequence[str] | None = None,
) -> str:
    """Store a new token's hash and return the token (the only time it exists in clear)."""
    if role not in ALL_ROLES:
        raise ValueError(f"unknown role {role!r}")
    if session.scalar(select(ApiTokenRow).where(ApiTokenRow.name == name)) is not None:
        raise Conflict(f"a token named {name!r} exists already", rule="unique_token_name")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(
        ApiTokenRow(
            name=name,
            role=role,
            token_hash=hash_token(token),
            created_at=now,
            expires_at=expires_at,
            channels=sorted(set(channels)) if channels else None,
        )
    )
    return token


def find_token(session: Session, token: str, now: datetime) -> ApiTokenRow | None:
    """The live token (not revoked, not expired) whose hash matches, or None."""
    row = session.scalar(select(ApiTokenRow).where(ApiTokenRow.token_hash == hash_token(token)))
    if row is None or row.revoked_at is not None:
        return None
    return row if row.expires_at is None or row.expires_at > now else None


def touch(session: Session, row: ApiTokenRow, now: datetime) -> None:
    """Note that the token was used, at most once a minute."""
    if row.last_used_at is None or now - row.last_used_at >= TOUCH_EVERY:
        session.execute(update(ApiTokenRow).where(ApiTokenRow.id == row.id).values(last_used_at=now))


def list_tokens(session: Session) -> list[ApiTokenRow]:
    return list(session.scalars(select(ApiTokenRow).order_by(ApiTokenRow.name)))


def revoke_token(session: Session, name: str, now: datetime) -> tuple[ApiTokenRow, bool]:
    """Revoke the token named `name`: (its row, whether it was live until now)."""
    row = session.scalar(select(ApiTokenRow).where(ApiTokenRow.name == name))
    if row is None:
        raise NotFound(f"no token named {name!r}")
    if row.revoked_at is not None:
        return row, False
    row.revoked_at = now
    return row, True


def audit(
    session: Session,
    now: datetime,
    actor: str,
    action: str,
    subject: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str | None = None,
    idempotency_key: str | None = None,
) -> None:
    session.add(
        AuditEventRow(
            at=now,
            actor=actor,
            action=action,
            subject=subject,
            before=before,
            after=after,
            reason=reason,
            idempotency_key=idempotency_key,
        )
    )

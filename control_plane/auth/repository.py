"""API tokens (stored as SHA-256 hashes; the token itself is shown once) and the audit log."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from control_plane.domain import Conflict
from control_plane.store.tables import ApiTokenRow, AuditEventRow

ROLES = ("viewer", "ingest", "operator", "admin")
TOKEN_PREFIX = "drctl_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, name: str, role: str, now: datetime) -> str:
    """Store a new token's hash and return the token (the only time it exists in clear)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    if session.scalar(select(ApiTokenRow).where(ApiTokenRow.name == name)) is not None:
        raise Conflict(f"a token named {name!r} exists already", rule="unique_token_name")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiTokenRow(name=name, role=role, token_hash=hash_token(token), created_at=now))
    return token


def find_token(session: Session, token: str) -> ApiTokenRow | None:
    row = session.scalar(select(ApiTokenRow).where(ApiTokenRow.token_hash == hash_token(token)))
    return row if row is not None and row.revoked_at is None else None


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

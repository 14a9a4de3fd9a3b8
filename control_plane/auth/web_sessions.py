"""Dashboard logins: a random cookie opened with an API token, stored as its SHA-256 only.

The session lives no longer than its expiry, its logout, or the token it was opened with (a
revoked token ends every session opened with it). The CSRF token of a session is derived from the
cookie (an HMAC), so it is bound to that session without being stored, and cannot be turned back
into the cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from control_plane.auth.repository import HOOK, audit, find_token, hash_token
from control_plane.store.tables import ApiTokenRow, WebSessionRow

COOKIE = "drctl_session"
COOKIE_PREFIX = "drctls_"


@dataclass(frozen=True, slots=True)
class WebLogin:
    name: str  # the token's name: the actor in the audit log
    role: str
    expires_at: datetime


def csrf_token(cookie: str) -> str:
    return hmac.new(cookie.encode(), b"drctl dashboard csrf", hashlib.sha256).hexdigest()


def csrf_ok(cookie: str, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(csrf_token(cookie), sent or "")


def open_session(session: Session, token: str, now: datetime, ttl: timedelta) -> tuple[str, WebLogin] | None:
    """A new session for a valid token: (the cookie, who); None for an unknown, revoked or expired token.

    Alertmanager's hook token opens no session: it may post alerts and nothing else.
    """
    row = find_token(session, token, now)
    if row is None or row.role == HOOK:
        return None
    cookie = COOKIE_PREFIX + secrets.token_urlsafe(32)
    expires = now + ttl if row.expires_at is None else min(now + ttl, row.expires_at)
    session.add(
        WebSessionRow(session_hash=hash_token(cookie), token_id=row.id, created_at=now, expires_at=expires)
    )
    audit(
        session,
        now,
        row.name,
        "session.login",
        f"token:{row.name}",
        after={"expires_at": expires.isoformat()},
    )
    return cookie, WebLogin(row.name, row.role, expires)


def find_session(session: Session, cookie: str, now: datetime) -> WebLogin | None:
    if not cookie.startswith(COOKIE_PREFIX):
        return None
    found = session.execute(
        select(ApiTokenRow.name, ApiTokenRow.role, WebSessionRow.expires_at)
        .join(ApiTokenRow, ApiTokenRow.id == WebSessionRow.token_id)
        .where(
            WebSessionRow.session_hash == hash_token(cookie),
            WebSessionRow.ended_at.is_(None),
            WebSessionRow.expires_at > now,
            ApiTokenRow.revoked_at.is_(None),
            or_(ApiTokenRow.expires_at.is_(None), ApiTokenRow.expires_at > now),
        )
    ).first()
    return WebLogin(found[0], found[1], found[2]) if found else None


def end_session(session: Session, cookie: str, now: datetime) -> bool:
    login = find_session(session, cookie, now)
    if login is None:
        return False
    session.execute(
        update(WebSessionRow).where(WebSessionRow.session_hash == hash_token(cookie)).values(ended_at=now)
    )
    audit(session, now, login.name, "session.logout", f"token:{login.name}")
    return True

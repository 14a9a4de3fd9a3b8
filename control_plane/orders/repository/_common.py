"""What the order repository's modules share: the dialect test."""

from __future__ import annotations

from sqlalchemy.orm import Session


def is_postgresql(session: Session) -> bool:
    return session.bind is not None and session.bind.dialect.name == "postgresql"

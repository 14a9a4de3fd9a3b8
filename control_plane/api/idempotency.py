"""Idempotency-Key on POST: the first answer is stored and replayed to every repeat of the key."""

from __future__ import annotations

import contextlib
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError

from control_plane.context import AppContext
from control_plane.store.tables import IdempotencyKeyRow


def replay(ctx: AppContext, actor: str, key: str, request: Request) -> JSONResponse | None:
    with ctx.sessions() as s:
        row = s.get(IdempotencyKeyRow, (actor, key))
    if row is None:
        return None
    resp = JSONResponse(row.body, status_code=row.status_code)
    resp.headers["Idempotent-Replay"] = "true"
    return resp


def remember(ctx: AppContext, actor: str, key: str, request: Request, status: int, body: Any) -> None:
    # a concurrent request with the same key may have stored first: its answer stands
    with contextlib.suppress(IntegrityError), ctx.sessions.begin() as s:
        s.add(
            IdempotencyKeyRow(
                actor=actor,
                key=key,
                method=request.method,
                path=request.url.path,
                status_code=status,
                body=body,
                created_at=ctx.clock(),
            )
        )

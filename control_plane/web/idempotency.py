"""Idempotency-Key on POST: the first answer is stored and replayed to every repeat of the key."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Header, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError

from control_plane.auth.deps import Principal
from control_plane.domain import Actor
from control_plane.store.tables import IdempotencyKeyRow

if TYPE_CHECKING:
    from control_plane.context import AppContext  # the type only: the context is built above every area

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]


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


def run_once(
    request: Request, who: Principal, key: str | None, status: int, action: Callable[[Actor], Any]
) -> JSONResponse:
    """Answer a repeat of an Idempotency-Key with the first answer; otherwise act and remember."""
    ctx = request.app.state.ctx
    if key:
        first = replay(ctx, who.name, key, request)
        if first is not None:
            return first
    body = action(Actor(who.name, key))
    if key:
        remember(ctx, who.name, key, request, status, body)
    return JSONResponse(body, status_code=status)

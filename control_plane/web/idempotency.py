"""Idempotency-Key on POST: bound to method, path and body; a repeat replays the first answer.

A key reused for another request (another site, endpoint or body) is refused with 422, as Stripe
does, and nothing is performed: replaying the first answer would tell the operator that a change
happened which never did.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError

from control_plane.auth.deps import Principal
from control_plane.domain import Actor, FieldError, InvalidInput
from control_plane.store.tables import IdempotencyKeyRow

if TYPE_CHECKING:
    from control_plane.context import AppContext  # the type only: the context is built above every area

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]


class IdempotencyKeyReused(InvalidInput):
    """The key was first sent with another method, path or body."""

    title = "Idempotency-Key reused"

    def __init__(self, key: str, first: IdempotencyKeyRow, request: Request) -> None:
        same_endpoint = (first.method, first.path) == (request.method, request.url.path)
        message = (
            f"Idempotency-Key {key!r} was already used for another request "
            f"({first.method} {first.path}{' with another body' if same_endpoint else ''}); "
            "nothing was done: send a new key for a new request"
        )
        super().__init__(message, [FieldError("Idempotency-Key", message)])


def request_hash(method: str, path: str, body: bytes) -> str:
    """sha256 of the method, the path and the body in a canonical JSON form.

    Canonical (sorted keys, no whitespace) rather than the raw bytes, so that a retry which
    re-serialises the same request is still the same request; any difference in content is not.
    """
    try:
        content: Any = ["json", json.loads(body)] if body else ["empty"]
    except ValueError:  # not JSON: handlers here only take JSON, but the bytes still identify it
        content = ["bytes", body.hex()]
    canonical = json.dumps(
        [method.upper(), path, content], sort_keys=True, separators=(",", ":"), ensure_ascii=True
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


async def hash_of_request(request: Request) -> str:
    """The request's hash (FastAPI has already read and cached the body it parsed)."""
    return request_hash(request.method, request.url.path, await request.body())


RequestHash = Annotated[str, Depends(hash_of_request)]


def _same_request(row: IdempotencyKeyRow, request: Request, digest: str | None) -> bool:
    if row.request_hash is not None and digest is not None:
        return row.request_hash == digest
    # stored before requests were hashed, or a caller that does not hash: method and path only
    return (row.method, row.path) == (request.method, request.url.path)


def replay(
    ctx: AppContext, actor: str, key: str, request: Request, request_hash: str | None = None
) -> JSONResponse | None:
    """The first answer to this key, or None if it is new; raise if the key was sent for another request.

    Without `request_hash` the key is compared on method and path only.
    """
    with ctx.sessions() as s:
        row = s.get(IdempotencyKeyRow, (actor, key))
    if row is None:
        return None
    if not _same_request(row, request, request_hash):
        raise IdempotencyKeyReused(key, row, request)
    resp = JSONResponse(row.body, status_code=row.status_code)
    resp.headers["Idempotent-Replay"] = "true"
    return resp


def remember(
    ctx: AppContext,
    actor: str,
    key: str,
    request: Request,
    status: int,
    body: Any,
    request_hash: str | None = None,
) -> None:
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
                request_hash=request_hash,
            )
        )


def run_once(
    request: Request,
    who: Principal,
    key: str | None,
    status: int,
    action: Callable[[Actor], Any],
    request_hash: str | None = None,
) -> JSONResponse:
    """Answer a repeat of an Idempotency-Key with the first answer; otherwise act and remember.

    Pass the request's `RequestHash` to bind the key to the body too; without it, a key is bound
    to method and path only.
    """
    ctx = request.app.state.ctx
    if key:
        first = replay(ctx, who.name, key, request, request_hash)
        if first is not None:
            return first
    body = action(Actor(who.name, key, None if who.at_least("operator") else who.channels))
    if key:
        remember(ctx, who.name, key, request, status, body, request_hash)
    return JSONResponse(body, status_code=status)

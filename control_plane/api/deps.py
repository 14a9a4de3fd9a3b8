"""Dependencies shared by the routers: the app context, a session, the caller's role."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from control_plane.context import AppContext
from control_plane.store import tokens as token_repo


def get_ctx(request: Request) -> AppContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


Ctx = Annotated[AppContext, Depends(get_ctx)]


def get_session(ctx: Ctx) -> Iterator[Session]:
    with ctx.sessions() as s:
        yield s


SessionDep = Annotated[Session, Depends(get_session)]


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: str

    def at_least(self, role: str) -> bool:
        return token_repo.ROLES.index(self.role) >= token_repo.ROLES.index(role)


class TokenCache:
    """Token hash -> principal for a few seconds, so intake does not query tokens per order."""

    def __init__(self, ttl_s: float = 5.0) -> None:
        self._ttl = ttl_s
        self._entries: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def lookup(self, token: str, load: Callable[[str], Principal | None]) -> Principal | None:
        key = token_repo.hash_token(token)
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(key)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        principal = load(token)
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[key] = (now, principal)
        return principal


def require(role: str) -> Callable[..., Principal]:
    """A dependency that lets through callers holding `role` or a higher one."""

    def check(request: Request, ctx: Ctx) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPException(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})

        def load(tok: str) -> Principal | None:
            with ctx.sessions() as s:
                row = token_repo.find_token(s, tok)
                return Principal(row.name, row.role) if row is not None else None

        cache: TokenCache = request.app.state.token_cache
        principal = cache.lookup(token.strip(), load)
        if principal is None:
            raise HTTPException(401, "unknown or revoked token", headers={"WWW-Authenticate": "Bearer"})
        if not principal.at_least(role):
            raise HTTPException(403, f"this call needs the {role!r} role; the token has {principal.role!r}")
        return principal

    return check


Viewer = Annotated[Principal, Depends(require("viewer"))]
Ingest = Annotated[Principal, Depends(require("ingest"))]
Operator = Annotated[Principal, Depends(require("operator"))]
Admin = Annotated[Principal, Depends(require("admin"))]

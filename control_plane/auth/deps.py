"""Dependencies shared by the routers: the app context, a session, the caller's role."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from control_plane.auth import repository as token_repo

if TYPE_CHECKING:
    from control_plane.context import AppContext  # the type only: the context is built above every area

auth_log = logging.getLogger("drctl.auth")

# The per-request dependencies are `async def` although they do no I/O on their usual path: FastAPI
# runs a plain `def` dependency in the threadpool, a thread hop (two wake-ups) per dependency per call.


async def get_ctx(request: Request) -> AppContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


if TYPE_CHECKING:
    Ctx = Annotated[AppContext, Depends(get_ctx)]
else:  # FastAPI evaluates the annotation at run time, where the context's type is not imported
    Ctx = Annotated[object, Depends(get_ctx)]


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

    def cached(self, token: str) -> tuple[bool, Principal | None]:
        """(True, principal or None if unknown) while fresh; (False, None) when it must be loaded."""
        with self._lock:
            hit = self._entries.get(token_repo.hash_token(token))
        if hit is not None and time.monotonic() - hit[0] < self._ttl:
            return True, hit[1]
        return False, None

    def lookup(self, token: str, load: Callable[[str], Principal | None]) -> Principal | None:
        found, principal = self.cached(token)
        if found:
            return principal
        now = time.monotonic()
        principal = load(token)
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[token_repo.hash_token(token)] = (now, principal)
        return principal


def require(role: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that lets through callers holding `role` or a higher one."""

    async def check(request: Request, ctx: Ctx) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})

        def load(tok: str) -> Principal | None:
            with ctx.sessions() as s:
                row = token_repo.find_token(s, tok)
                return Principal(row.name, row.role) if row is not None else None

        cache: TokenCache = request.app.state.token_cache
        found, principal = cache.cached(token)
        if not found:  # the database is only asked off the event loop
            principal = await run_in_threadpool(cache.lookup, token, load)
        if principal is None:
            # security-relevant, so logged; the token itself never is (logs.RedactTokens masks it too)
            auth_log.warning("unknown or revoked token on %s %s", request.method, request.url.path)
            raise HTTPException(401, "unknown or revoked token", headers={"WWW-Authenticate": "Bearer"})
        if not principal.at_least(role):
            auth_log.warning(
                "%s (%s) refused %s %s", principal.name, principal.role, request.method, request.url.path
            )
            raise HTTPException(403, f"this call needs the {role!r} role; the token has {principal.role!r}")
        return principal

    return check


Viewer = Annotated[Principal, Depends(require("viewer"))]
Ingest = Annotated[Principal, Depends(require("ingest"))]
Operator = Annotated[Principal, Depends(require("operator"))]
Admin = Annotated[Principal, Depends(require("admin"))]

"""Dependencies shared by the routers: the app context, a session, the caller's role."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from control_plane.auth import repository as token_repo
from failover.rate import RateLimiter

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
    channels: frozenset[str] | None = None  # an ingest token bound to these sales channels; None: any
    expires_at: datetime | None = None

    def at_least(self, role: str) -> bool:
        if role == token_repo.HOOK:  # the hook's calls: its own token, or an admin's
            return self.role in (token_repo.HOOK, "admin")
        if self.role == token_repo.HOOK:
            return False
        return token_repo.ROLES.index(self.role) >= token_repo.ROLES.index(role)

    def may_post_for(self, channel: str) -> bool:
        """Whether the token may take or cancel orders of `channel` (operators may for any)."""
        return self.channels is None or channel in self.channels or self.at_least("operator")

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at


class TokenCache:
    """Token hash -> principal for a few seconds, so intake does not query tokens per order.

    Unknown tokens are remembered apart, in a bounded LRU: a client spraying made-up tokens can
    neither grow memory nor push the valid ones out (which would send every request to the database).
    """

    def __init__(self, ttl_s: float = 5.0, max_unknown: int = 4096) -> None:
        self._ttl = ttl_s
        self._known: dict[str, tuple[float, Principal]] = {}
        self._unknown: OrderedDict[str, float] = OrderedDict()
        self._max_unknown = max_unknown
        self._lock = threading.Lock()

    def cached(self, token: str) -> tuple[bool, Principal | None]:
        """(True, principal or None if unknown) while fresh; (False, None) when it must be loaded."""
        return self._cached(token_repo.hash_token(token))

    def _cached(self, key: str) -> tuple[bool, Principal | None]:
        now = time.monotonic()
        with self._lock:
            hit = self._known.get(key)
            if hit is not None and now - hit[0] < self._ttl:
                return True, hit[1]
            seen = self._unknown.get(key)
            if seen is not None and now - seen < self._ttl:
                return True, None
        return False, None

    def lookup(self, token: str, load: Callable[[str], Principal | None]) -> Principal | None:
        key = token_repo.hash_token(token)
        found, principal = self._cached(key)
        if found:
            return principal
        now = time.monotonic()
        principal = load(token)
        with self._lock:
            if principal is not None:
                self._known[key] = (now, principal)
                self._unknown.pop(key, None)
            else:
                self._known.pop(key, None)  # revoked or expired since it was cached
                self._unknown[key] = now
                self._unknown.move_to_end(key)
                while len(self._unknown) > self._max_unknown:
                    self._unknown.popitem(last=False)
        return principal


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def require(role: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that lets through callers holding `role` or a higher one."""

    async def check(request: Request, ctx: Ctx) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized("a bearer token is required")

        def load(tok: str) -> Principal | None:
            now = ctx.clock()
            with ctx.sessions.begin() as s:
                row = token_repo.find_token(s, tok, now)
                if row is None:
                    return None
                token_repo.touch(s, row, now)
                channels = frozenset(row.channels) if row.channels else None
                return Principal(row.name, row.role, channels, row.expires_at)

        cache: TokenCache = request.app.state.token_cache
        failures: RateLimiter = request.app.state.auth_failures
        client = client_address(request)
        found, principal = cache.cached(token)
        if not found or principal is None:
            # a client that keeps sending unknown tokens waits, and costs no query while it does
            wait = failures.wait_s(client)
            if wait > 0:
                auth_log.warning("too many unknown tokens from %s: refused for %.0f s", client, wait)
                retry = {"Retry-After": str(math.ceil(wait))}
                raise HTTPException(429, "too many requests with unknown tokens", headers=retry)
        if not found:  # the database is only asked off the event loop
            principal = await run_in_threadpool(cache.lookup, token, load)
        if principal is None or principal.expired(ctx.clock()):
            failures.try_acquire(client)
            # security-relevant, so logged; the token itself never is (logs.RedactTokens masks it too)
            auth_log.warning("unknown, revoked or expired token on %s %s", request.method, request.url.path)
            raise _unauthorized("unknown, revoked or expired token")
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
Hook = Annotated[Principal, Depends(require(token_repo.HOOK))]

"""Refuse a URL whose path or query carries a control character (400 problem+json), before routing.

A NUL in an order id would reach PostgreSQL, which cannot hold it; no path or query of the API has a
use for any C0 control, so they are refused once here rather than in every endpoint.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Receive, Scope, Send

from control_plane.web.problems import send_problem

_CONTROLS = frozenset(range(0x20)) | {0x7F}


class UrlGuardMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
            for part, name in ((raw, "path"), (scope.get("query_string", b""), "query")):
                if _CONTROLS.intersection(unquote_to_bytes(part.replace(b"+", b" "))):
                    await send_problem(send, 400, "Bad request", f"the {name} contains a control character")
                    return
        await self.app(scope, receive, send)

"""Refuse request bodies over a size limit with 413 problem+json, before anything parses them.

Written here rather than using Starlette's RequestBodyLimitMiddleware (FastAPI's `max_body_size`)
because that one answers in text/plain from outside the app's exception handlers, and our
contract is problem+json for every error.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from control_plane.web.problems import send_problem


class BodyTooLarge(HTTPException):
    """Raised while the app reads the body. An HTTPException, because FastAPI turns any other
    error met while reading a body into a 400 ("error parsing the body"): a chunked body over the
    limit (no Content-Length to refuse up front) must be a 413 like a declared one."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"the body exceeds {max_bytes} bytes")


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._reject(send)
                return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._reject(send)

    async def _reject(self, send: Send) -> None:
        await send_problem(send, 413, "Request body too large", f"the body exceeds {self.max_bytes} bytes")

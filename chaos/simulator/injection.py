"""ASGI middleware that counts a target's contract requests and applies its current fault."""

from __future__ import annotations

import asyncio
import contextlib

from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chaos.simulator.faults import (
    DownFault,
    ErrorRateFault,
    LatencyFault,
    NoFault,
    PartitionFault,
    SlowFault,
)
from chaos.simulator.state import SimulatorControls, TargetState

SIM_PREFIX = "/_sim/"
_UNAVAILABLE_BODY = b'{"detail":"injected fault: error_rate"}'
# How long a dropped request waits for the server to notice its connection is gone.
_DROP_GRACE_S = 1.0


class FaultInjector:
    """Wrap a target's app: every request outside `/_sim/` is counted, then meets the fault."""

    def __init__(
        self, app: ASGIApp, routes: list[BaseRoute], state: TargetState, controls: SimulatorControls
    ) -> None:
        self.app = app
        self.state = state
        self.controls = controls
        self._routes = [r for r in routes if isinstance(r, Route) and not r.path.startswith(SIM_PREFIX)]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(SIM_PREFIX):
            await self.app(scope, receive, send)
            return
        state = self.state
        state.requests[self._route_key(scope)] += 1
        # Read the fault and its release event together, before any await, so a change cannot slip between.
        fault, released = state.fault, state.fault_changed
        match fault:
            case NoFault():
                await self.app(scope, receive, send)
            case LatencyFault(latency_ms=latency_ms):
                await self._process_after(latency_ms, scope, receive, send)
            case SlowFault(latency_ms=latency_ms) if scope["path"] == "/health":
                await self._process_after(latency_ms, scope, receive, send)
            case SlowFault():
                await self.app(scope, receive, send)
            case ErrorRateFault(p=p):
                if state.rng.random() < p:
                    await _send_unavailable(send)
                else:
                    await self.app(scope, receive, send)
            case PartitionFault():
                await self._hang_until(released, scope, receive)
            case DownFault():
                # Only a request racing the listener's close gets here; it sees a dead connection.
                await self._drop(scope, receive)

    def _route_key(self, scope: Scope) -> str:
        method = scope["method"]
        for route in self._routes:
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                return f"{method} {route.path}"
        return f"{method} (unmatched)"

    async def _process_after(self, latency_ms: int, scope: Scope, receive: Receive, send: Send) -> None:
        # Take the whole body first: a client that times out during the wait must not stop the DC from
        # processing what it was sent (uvicorn keeps running the task; sends to a gone client are dropped).
        replay = await _buffer_body(receive)
        if replay is None:
            return
        await asyncio.sleep(latency_ms / 1000)
        await self.app(scope, replay, send)

    async def _hang_until(self, released: asyncio.Event, scope: Scope, receive: Receive) -> None:
        if await _buffer_body(receive) is None:
            return
        # After the body, uvicorn's receive() returns only when the client disconnects.
        client_gone = asyncio.ensure_future(receive())
        fault_changed = asyncio.ensure_future(released.wait())
        try:
            await asyncio.wait({client_gone, fault_changed}, return_when=asyncio.FIRST_COMPLETED)
            if not client_gone.done():
                self.controls.drop_connection(self.state.name, scope.get("client"))
                await asyncio.wait({client_gone}, timeout=_DROP_GRACE_S)
        finally:
            client_gone.cancel()
            fault_changed.cancel()

    async def _drop(self, scope: Scope, receive: Receive) -> None:
        if self.controls.drop_connection(self.state.name, scope.get("client")):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_wait_disconnect(receive), timeout=_DROP_GRACE_S)


async def _buffer_body(receive: Receive) -> Receive | None:
    """Read the full request body; return a receive() that replays it, or None if the client left."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

    return replay


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _send_unavailable(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(_UNAVAILABLE_BODY)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _UNAVAILABLE_BODY})

"""Operator overrides of circuit breakers: hold one open, close it, or reset it to a trial call.

A breaker held open admits nothing until an operator closes or resets it, however long past its
reset timeout (a DC known to be bad, a drill). The answer comes once the calls this process had
already let through are back, so that no order is sent through the breaker after a 200 "open";
the count of calls still out when the wait ran out is in the answer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy.orm import Session, sessionmaker

from control_plane.auth.repository import audit
from control_plane.domain import BreakerState, NotFound
from failover.breakers import BreakerBoard, GatedBreaker

BreakerAction = Literal["open", "close", "reset"]
DRAIN_WAIT_S = 10.0  # beyond a DC call's read timeout: calls let through before the hold are back


def breaker_json(breaker: GatedBreaker) -> dict[str, Any]:
    return {
        "name": breaker.name, "state": breaker.state.value, "held": breaker.held,
        "fail_counter": breaker.fail_counter,
    }  # fmt: skip


def find_breaker(ctx: Any, name: str) -> GatedBreaker:
    """The breaker of that name (a site's, or one already used); a typo'd name is refused rather
    than creating a new breaker."""
    board: BreakerBoard = ctx.board
    if name not in set(board.names()) | {st.site.code for st in ctx.sites.snapshot()}:
        raise NotFound(f"no breaker {name!r}: GET /v1/breakers lists them")
    return board.get(name)


def override(
    sessions: sessionmaker[Session],
    breaker: GatedBreaker,
    action: BreakerAction,
    actor: str,
    reason: str,
    now: datetime,
) -> dict[str, Any]:
    """Apply the override with its audit record, or not at all: a failed commit puts the breaker
    back. After an open, the answer waits out the calls this process had already let through."""
    before = breaker_json(breaker)
    try:
        with sessions.begin() as s:
            after = _apply(s, breaker, action, actor, reason, now, before)
    except Exception:
        breaker.force(BreakerState(before["state"]), hold=before["held"])
        raise
    if action == "open":
        after["in_flight"] = breaker.wait_idle(DRAIN_WAIT_S)
    return after


def _apply(
    session: Session,
    breaker: GatedBreaker,
    action: BreakerAction,
    actor: str,
    reason: str,
    now: datetime,
    before: dict[str, Any],
) -> dict[str, Any]:
    if action == "open":
        breaker.force(BreakerState.OPEN)
    elif action == "close":
        breaker.force(BreakerState.CLOSED)
    else:
        breaker.reset()
    after = breaker_json(breaker)
    audit(session, now, actor, f"breaker.{action}", f"breaker:{breaker.name}", before, after, reason)
    return after

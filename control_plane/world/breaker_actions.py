"""Operator overrides of circuit breakers: hold one open, close it, or reset it to a trial call.

A breaker held open admits nothing until an operator closes or resets it, however long past its
reset timeout (a DC known to be bad, a drill). The answer comes once the calls this process had
already let through are back, so that no order is sent through the breaker after a 200 "open";
the count of calls still out when the wait ran out is in the answer.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.orm import Session

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


def find_breaker(board: BreakerBoard, known: Callable[[], list[str]], name: str) -> GatedBreaker:
    """The breaker of that name; a typo'd name is refused rather than creating a new breaker."""
    if name not in set(board.names()) | set(known()):
        raise NotFound(f"no breaker {name!r}: GET /v1/breakers lists them")
    return board.get(name)


def act_on_breaker(
    session: Session,
    breaker: GatedBreaker,
    action: BreakerAction,
    actor: str,
    reason: str,
    now: datetime,
) -> dict[str, Any]:
    """Apply the override and audit it; the caller commits (or `restore`s the breaker if it cannot),
    then waits out the calls still in flight (`wait_idle`) after an open."""
    before = breaker_json(breaker)
    if action == "open":
        breaker.force(BreakerState.OPEN)
    elif action == "close":
        breaker.force(BreakerState.CLOSED)
    else:
        breaker.reset()
    after = breaker_json(breaker)
    audit(session, now, actor, f"breaker.{action}", f"breaker:{breaker.name}", before, after, reason)
    return after


def restore(breaker: GatedBreaker, before: dict[str, Any]) -> None:
    """Put the breaker back as it was when its audit record could not be written."""
    breaker.force(BreakerState(before["state"]), hold=before["held"])

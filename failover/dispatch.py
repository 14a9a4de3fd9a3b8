"""Send one order to one DC through its circuit breaker and classify what happened.

The HTTP client is handed in (a `DcClient`); this module decides what counts against the breaker
(5xx, timeouts, broken connections; not 4xx) and whether the DC may hold a copy we did not hear
about (every failure after the request may have reached it), which the caller must then cancel.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from control_plane.domain import AttemptOutcome, Site
from failover.breakers import BreakerBoard, BreakerOpen


class FailureKind(StrEnum):
    REFUSED = "refused"  # no connection: the DC cannot have the order
    TIMEOUT = "timeout"
    SERVER_ERROR = "server_error"
    BROKEN = "broken"  # connection dropped mid-exchange
    BAD_ANSWER = "bad_answer"  # a success status with a body we cannot read


class DcUnavailable(Exception):
    """The DC did not give an answer we can trust; counts against its breaker.

    `may_have_reached_dc` is False only when the request provably never left (no connection).
    """

    def __init__(self, kind: FailureKind, detail: str, may_have_reached_dc: bool = True) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.may_have_reached_dc = may_have_reached_dc


class DcRejected(Exception):
    """The DC answered 4xx: alive, but it will not take this order."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


@dataclass(frozen=True, slots=True)
class DcAck:
    dc_ref: str
    status: str


class CancelOutcome(StrEnum):
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"  # 404: the DC does not have it
    SHIPPED = "shipped"  # 409: too late


class DcClient(Protocol):
    """The DC contract of DESIGN §4, as the top layer implements it over HTTP."""

    def submit(self, site: Site, payload: Mapping[str, Any]) -> DcAck: ...

    def cancel(self, site: Site, order_id: str) -> CancelOutcome: ...


@dataclass(frozen=True, slots=True)
class DispatchResult:
    site: str
    outcome: AttemptOutcome
    reason: str
    latency_ms: float | None = None
    dc_ref: str | None = None
    needs_cancel: bool = False  # the DC may hold a copy although we treat the attempt as failed


def dispatch_once(
    board: BreakerBoard,
    client: DcClient,
    site: Site,
    payload: Mapping[str, Any],
) -> DispatchResult:
    """Try `site` once: breaker admission, the call outside any lock, outcome fed back."""
    breaker = board.get(site.code)
    try:
        admission = breaker.admit()
    except BreakerOpen:
        return DispatchResult(site.code, AttemptOutcome.BREAKER_OPEN, "breaker open: not attempted")
    started = time.perf_counter()
    try:
        ack = client.submit(site, payload)
    except DcUnavailable as exc:
        elapsed = time.perf_counter() - started
        breaker.record_failure(admission, exc)
        outcome = AttemptOutcome.FAILED if exc.may_have_reached_dc else AttemptOutcome.REFUSED
        return DispatchResult(site.code, outcome, str(exc), elapsed * 1000, None, exc.may_have_reached_dc)
    except DcRejected as exc:
        elapsed = time.perf_counter() - started
        breaker.record_success(admission)  # a 4xx is the DC working as designed
        return DispatchResult(site.code, AttemptOutcome.REJECTED, str(exc), elapsed * 1000)
    except BaseException:
        breaker.record_failure(admission, RuntimeError("unexpected client error"))
        raise
    elapsed = time.perf_counter() - started
    breaker.record_success(admission)
    reason = f"accepted as {ack.dc_ref}"
    return DispatchResult(site.code, AttemptOutcome.ACCEPTED, reason, elapsed * 1000, ack.dc_ref)


def cancel_breaker(site_code: str) -> str:
    """The breaker of a DC's cancel calls: their own, since a cancel's longer timeout lets it succeed
    where order calls time out, and its successes must not reset the order breaker's failure count."""
    return f"cancel:{site_code}"


def cancel_once(board: BreakerBoard, client: DcClient, site: Site, order_id: str) -> CancelOutcome | None:
    """Ask `site` to cancel through its cancel breaker; None when it did not answer or that is open."""
    breaker = board.get(cancel_breaker(site.code))
    try:
        admission = breaker.admit()
    except BreakerOpen:
        return None
    try:
        outcome = client.cancel(site, order_id)
    except DcUnavailable as exc:
        breaker.record_failure(admission, exc)
        return None
    except DcRejected:
        breaker.record_success(admission)
        return None
    except BaseException:
        breaker.record_failure(admission, RuntimeError("unexpected client error"))
        raise
    breaker.record_success(admission)
    return outcome


def proves_absent(
    outcome: CancelOutcome | None, last_post_at: datetime | None, now: datetime, settle_s: float
) -> bool:
    """Whether a DC's answer to our cancel proves it holds no live copy of the order.

    A 200 (cancelled) does. A 404 does only when no POST of ours can still be in flight there:
    `last_post_at` None means the DC acknowledged the order and nothing was sent since; otherwise a
    slow DC may still be processing that POST, so the 404 counts once `settle_s` have passed.
    One rule for the failover's move and for the cancel outbox.
    """
    if outcome is CancelOutcome.CANCELLED:
        return True
    if outcome is CancelOutcome.UNKNOWN:
        return last_post_at is None or (now - last_post_at).total_seconds() >= settle_s
    return False

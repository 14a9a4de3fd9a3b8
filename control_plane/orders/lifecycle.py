"""After dispatch: what a DC tells us (shipped, cancelled by the DC) and cancelling an order.

Every change is decided under the order's row lock (SELECT ... FOR UPDATE on PostgreSQL; SQLite has
one writer), so a DC event racing with a failover move, a retry or a cancel applies only if the
order still lives at that DC when the lock is taken. No transaction is held open across a call to
a DC: a cancel is decided and queued in one short transaction, the DC is asked outside it, and its
answer is recorded in another.

Every event and cancel leaves a row in the order's timeline (`route_attempts`), which
`GET /v1/orders/{id}` lists.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from control_plane.auth import repository as audit_log
from control_plane.domain import (
    Actor,
    Conflict,
    FieldError,
    Forbidden,
    InvalidInput,
    NotFound,
    OrderStatus,
)
from control_plane.orders import repository as repo
from control_plane.orders.slips import NoSlips, Slip, SlipReason, SlipSink
from control_plane.store.db import retry_on_deadlock
from control_plane.store.tables import OrderRow
from control_plane.world.state import SiteStateCache
from failover.breakers import BreakerBoard, BreakerOpen
from failover.dispatch import CancelOutcome, DcClient, DcRejected, DcUnavailable, cancel_breaker

if TYPE_CHECKING:
    from control_plane.context import AppContext  # the type only: the context is built above every area

log = logging.getLogger("drctl.lifecycle")

# timeline outcomes (route_attempts.outcome is String(16))
SHIPPED = "shipped"
SHIP_CONFLICT = "ship_conflict"  # a DC shipped a copy of an order that does not live there
CANCELLED_BY_DC = "cancelled_by_dc"
CANCELLED = "cancelled"
CANCEL_CONFIRMED = "cancel_confirmed"
CANCEL_QUEUED = "cancel_queued"

# a DC's clock may run ahead of ours, but not by this much; before EARLIEST_EVENT it is broken
MAX_CLOCK_AHEAD = timedelta(days=1)
EARLIEST_EVENT = datetime(2000, 1, 1, tzinfo=UTC)


class DcEventKind(StrEnum):
    SHIPPED = "shipped"
    CANCELLED_BY_DC = "cancelled_by_dc"


class EventOutcome(StrEnum):
    APPLIED = "applied"  # the order changed
    DUPLICATE = "duplicate"  # we knew it already: nothing changed
    CONFLICT = "conflict"  # the DC shipped an order that does not live there: recorded for an operator
    IGNORED = "ignored"  # the DC dropped a copy we held no claim on: nothing to do


@dataclass(frozen=True, slots=True)
class DcEvent:
    site: str
    order_id: str
    kind: DcEventKind
    at: datetime  # the DC's own time, with a timezone
    via: str = "webhook"  # or "poll": noted in the timeline


@dataclass(frozen=True, slots=True)
class EventResult:
    order_id: str
    kind: DcEventKind
    outcome: EventOutcome
    status: str  # the order's status afterwards


def check_event_time(at: datetime, now: datetime) -> datetime:
    """The DC's timestamp in UTC; InvalidInput (naming `at`) when it has no timezone or is absurd."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise InvalidInput("at: must carry a timezone", [FieldError("at", "must carry a timezone")])
    at = at.astimezone(UTC)
    if at > now + MAX_CLOCK_AHEAD or at < EARLIEST_EVENT:
        msg = f"{at.isoformat()} is not a plausible time (more than a day ahead, or before 2000)"
        raise InvalidInput(f"at: {msg}", [FieldError("at", msg)])
    return at


class OrderLifecycle:
    """Apply DC events and cancel orders; gets its collaborators, commits its own short units of work."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        sites: SiteStateCache,
        board: BreakerBoard,
        client: DcClient,
        clock: Callable[[], datetime],
        cancel_lease_s: float,
        slips: SlipSink | None = None,
    ) -> None:
        self._sessions = sessions
        self._slips: SlipSink = slips or NoSlips()
        self._sites = sites
        self._board = board
        self._client = client
        self._clock = clock
        self._cancel_lease = timedelta(seconds=cancel_lease_s)

    # --- DC events ---

    def apply_event(self, event: DcEvent) -> EventResult:
        """Apply one DC event under the order's lock; the same event again changes nothing."""
        now = self._clock()
        event = DcEvent(event.site, event.order_id, event.kind, check_event_time(event.at, now), event.via)
        return retry_on_deadlock(partial(self._apply, event, now))

    def _apply(self, event: DcEvent, now: datetime) -> EventResult:
        with self._sessions.begin() as s:
            row = repo.lock_order(s, event.order_id)
            if row is None:
                raise NotFound(f"no order {event.order_id!r}")
            if event.kind is DcEventKind.SHIPPED:
                outcome = self._shipped(s, row, event, now)
            else:
                outcome = self._cancelled_by_dc(s, row, event, now)
            return EventResult(row.id, event.kind, outcome, row.status)

    def _shipped(self, s: Session, row: OrderRow, event: DcEvent, now: datetime) -> EventOutcome:
        """The DC shipped the order.

        Living there (routed or accepted at that DC): the order is shipped at the DC's time, and the
        DC consumed the units we had reserved, so they leave both `stock.on_hand` and
        `stock.reserved` at that site. Held after that DC had it (no other DC has it): the shipment
        is adopted, else the retry loop would ship it a second time; its units were released, so
        they leave `on_hand` only. Anywhere else (moved to another DC, cancelled): a conflict for an
        operator, recorded in the timeline and on the DC's pending cancel; the order is not changed.
        """
        site, at = event.site, event.at
        if row.site == site and row.status in repo.LIVE_AT_DC:
            repo.consume_reserved(s, site, repo.order_lines(s, row.id))
            self._mark_shipped(s, row, site, at, now, f"shipped by {site} at {at.isoformat()} ({event.via})")
            return EventOutcome.APPLIED
        if row.site == site and row.status == OrderStatus.SHIPPED.value:
            return EventOutcome.DUPLICATE
        if row.status == OrderStatus.HELD.value and repo.was_sent_to(s, row.id, site):
            repo.consume_unreserved(s, site, repo.order_lines(s, row.id))
            repo.finish_cancel(s, row.id, site, "done", "the DC shipped it; the order is marked shipped", now)
            reason = f"shipped by {site} at {at.isoformat()} ({event.via}) while held: shipment adopted"
            self._mark_shipped(s, row, site, at, now, reason)
            log.warning("held order shipped by a DC it had left", extra={"order_id": row.id, "site": site})
            return EventOutcome.APPLIED
        owed = repo.finish_cancel(
            s, row.id, site, "conflict", "the DC shipped it although we had asked it to cancel", now
        )
        if not owed and repo.has_attempt(s, row.id, site, SHIP_CONFLICT):
            return EventOutcome.DUPLICATE
        where = f"{row.status} at {row.site or 'no DC'}"
        reason = f"{site} shipped a copy at {at.isoformat()} ({event.via}) while the order is {where}"
        _note(s, row.id, site, SHIP_CONFLICT, reason, now)
        log.error(
            "a DC shipped an order that does not live there",
            extra={"order_id": row.id, "site": site, "status": row.status, "lives_at": row.site},
        )
        return EventOutcome.CONFLICT

    def _mark_shipped(
        self, s: Session, row: OrderRow, site: str, at: datetime, now: datetime, reason: str
    ) -> None:
        repo.ship(row, site, at, now)
        _note(s, row.id, site, SHIPPED, reason, now)
        self._slips.shipped(s, row, now)

    def _cancelled_by_dc(self, s: Session, row: OrderRow, event: DcEvent, now: datetime) -> EventOutcome:
        """The DC gave the order up: if it lived there, hold it for the retry loop to route elsewhere.

        Its reservation at that DC is released and it is due at once, so it is never lost. A copy
        that did not live there and that we owed a cancel is simply gone: the cancel is done.
        """
        site, at = event.site, event.at
        if row.site == site and row.status in repo.LIVE_AT_DC:
            repo.release(s, site, repo.order_lines(s, row.id))
            repo.hold(row, now, next_attempt_at=now)
            self._slips.record(s, [Slip.of(row, None, site, SlipReason.HELD)], now)
            reason = f"{site} cancelled it at {at.isoformat()} ({event.via}); held to be routed again"
            _note(s, row.id, site, CANCELLED_BY_DC, reason, now)
            log.warning("order cancelled by its DC; re-routing it", extra={"order_id": row.id, "site": site})
            return EventOutcome.APPLIED
        if repo.finish_cancel(s, row.id, site, "done", "the DC cancelled its copy itself", now):
            _note(s, row.id, site, CANCELLED_BY_DC, f"{site} cancelled its copy at {at.isoformat()}", now)
            return EventOutcome.APPLIED
        if repo.has_attempt(s, row.id, site, CANCELLED_BY_DC):
            return EventOutcome.DUPLICATE
        return EventOutcome.IGNORED

    # --- cancel ---

    def cancel_order(self, order_id: str, actor: Actor, reason: str) -> None:
        """Cancel an order: mark it cancelled and release its stock, then ask its DC to cancel.

        Raises NotFound, or Conflict(rule="already_shipped") when it has shipped, including when
        its DC answers the cancel with "already shipped" (the order is then marked shipped). A DC
        that does not answer (or whose breaker is open) is left to the cancel outbox, queued in the
        same transaction as the cancel. Cancelling a cancelled order changes nothing.
        """
        now = self._clock()
        site = retry_on_deadlock(partial(self._mark_cancelled, order_id, actor, reason, now))
        if site is None:
            return  # already cancelled, or held: no DC holds it (copies owed a cancel are queued already)
        answer, why = self._ask_dc_to_cancel(site, order_id)
        shipped = retry_on_deadlock(partial(self._record_cancel_answer, order_id, site, answer, why))
        if shipped:
            raise Conflict(f"order {order_id!r} already shipped from {site}", rule="already_shipped")

    def _mark_cancelled(self, order_id: str, actor: Actor, reason: str, now: datetime) -> str | None:
        """The cancel's first transaction; returns the DC to ask, if the order lived at one."""
        with self._sessions.begin() as s:
            row = repo.lock_order(s, order_id)
            if row is None:
                raise NotFound(f"no order {order_id!r}")
            if actor.channels is not None and row.channel not in actor.channels:
                raise Forbidden(f"this token may cancel orders of {', '.join(sorted(actor.channels))} only")
            if row.status == OrderStatus.CANCELLED.value:
                return None
            if row.status == OrderStatus.SHIPPED.value:
                raise Conflict(f"order {order_id!r} already shipped", rule="already_shipped")
            before = {"status": row.status, "site": row.site}
            site = row.site if row.status in repo.LIVE_AT_DC else None
            if site is not None:
                repo.release(s, site, repo.order_lines(s, order_id))
                repo.queue_cancel(
                    s, order_id, site, f"order cancelled: {reason}", now, now + self._cancel_lease
                )
            repo.cancel(row, now)
            _note(s, order_id, site, CANCELLED, f"cancelled by {actor.name}: {reason}", now)
            audit_log.audit(
                s,
                now,
                actor.name,
                "order.cancel",
                f"order:{order_id}",
                before=before,
                after={"status": OrderStatus.CANCELLED.value, "dc_cancel": site},
                reason=reason,
                idempotency_key=actor.idempotency_key,
            )
            return site

    def _ask_dc_to_cancel(self, site_code: str, order_id: str) -> tuple[CancelOutcome | None, str]:
        """`DELETE {wms_url}/orders/{id}` through the site's breaker; (None, why) when no answer."""
        try:
            site = self._sites.site(site_code)
        except KeyError:  # the site left the world meanwhile: the outbox owns the cancel
            return None, "unknown site"
        breaker = self._board.get(cancel_breaker(site_code))
        try:
            admission = breaker.admit()
        except BreakerOpen:
            return None, "breaker open"
        try:
            outcome = self._client.cancel(site, order_id)
        except DcUnavailable as exc:
            breaker.record_failure(admission, exc)
            return None, str(exc)
        except DcRejected as exc:
            breaker.record_success(admission)  # a 4xx is the DC working as designed
            return None, str(exc)
        except BaseException:
            breaker.record_failure(admission, RuntimeError("unexpected client error"))
            raise
        breaker.record_success(admission)
        return outcome, outcome.value

    def _record_cancel_answer(self, order_id: str, site: str, answer: CancelOutcome | None, why: str) -> bool:
        """The cancel's second transaction; True when the DC had shipped the order already."""
        now = self._clock()
        with self._sessions.begin() as s:
            if answer is CancelOutcome.CANCELLED:
                if repo.finish_cancel(s, order_id, site, "done", "cancelled at the DC with the order", now):
                    _note(s, order_id, site, CANCEL_CONFIRMED, f"{site} cancelled it", now)
                return False
            if answer is CancelOutcome.SHIPPED:
                row = repo.lock_order(s, order_id)
                repo.finish_cancel(
                    s, order_id, site, "done", "the DC had shipped it: the order is shipped", now
                )
                if row is not None and row.status == OrderStatus.CANCELLED.value:
                    # the release of the first transaction is undone: the DC consumed those units
                    repo.consume_unreserved(s, site, repo.order_lines(s, order_id))
                    reason = f"{site} answered the cancel: already shipped"
                    self._mark_shipped(s, row, site, now, now, reason)  # the DC gave no time: ours
                return True
            # no answer, or 404 (a POST may still be on its way there): the outbox goes on asking
            repo.release_cancel_lease(s, order_id, site, now)
            reason = f"{site} did not confirm the cancel ({why}); the cancel outbox keeps asking"
            _note(s, order_id, site, CANCEL_QUEUED, reason, now)
            return False


def build_lifecycle(ctx: AppContext) -> OrderLifecycle:
    """The lifecycle service over a context's parts (no I/O: cheap enough to build per request).

    A DC cancel's lease in the outbox is twice the cancel timeout: the synchronous call is over
    by then, answered or not.
    """
    return OrderLifecycle(
        ctx.sessions,
        ctx.sites,
        ctx.board,
        ctx.client,
        ctx.clock,
        2 * ctx.settings.dc_cancel_timeout_s,
        ctx.slips,
    )


def _note(s: Session, order_id: str, site: str | None, outcome: str, reason: str, now: datetime) -> None:
    repo.add_attempt(s, order_id, repo.Attempt(now, site, outcome, reason))

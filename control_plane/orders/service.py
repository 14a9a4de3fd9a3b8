"""The order path: take an order, route it, reserve stock, dispatch it through breakers, reroute.

Why several commits per order: the order, its routing decision and its stock reservation commit
together *before* the DC is called, so a crash between commit and DC call leaves a `routed`
order whose dispatch lease runs out and that the retry loop re-posts (DCs are idempotent on
order_id). Each DC answer is then recorded in its own short transaction. No transaction is held
open across a network call. Taking an order and recording its acknowledgement go through
`store.intake` units (one statement per step on PostgreSQL); the rarer paths use sessions.

Never lost, never twice: an order no DC takes is `held` (kept, retried with backoff). When a call
failed in a way that may still have reached the DC (timeout, 5xx, broken connection) and the order
moves on, a cancel for that DC is queued in the same transaction (`dc_cancels`, an outbox), and the
order is never routed back to a DC while a cancel for it is pending there.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from control_plane.domain import (
    AttemptOutcome,
    BreakerState,
    Conflict,
    Customer,
    OrderLine,
    OrderRequest,
    OrderStatus,
    ShipTo,
    SiteState,
)
from control_plane.metrics import Metrics
from control_plane.orders import fast_path as intake
from control_plane.orders import repository as repo
from control_plane.store.db import retry_on_deadlock
from control_plane.store.tables import OrderRow
from control_plane.world.state import SiteStateCache
from failover.backoff import retry_delay_s
from failover.breakers import BreakerBoard
from failover.dispatch import DcClient, DispatchResult, dispatch_once
from failover.eta import EtaModel
from failover.routing import Candidate, rank_candidates

log = logging.getLogger("drctl.orders")


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    dispatch_lease_s: float
    backoff_base_s: float
    backoff_max_s: float
    retry_batch: int


@dataclass
class Trace:
    """What one call did to an order, kept in memory so the answer needs no second read."""

    status: OrderStatus = OrderStatus.RECEIVED
    site: str | None = None
    dc_ref: str | None = None
    eta: datetime | None = None
    attempts: list[repo.Attempt] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SubmitResult:
    order_id: str
    created: bool  # False: a repeat of an order we already had; nothing was dispatched
    trace: Trace | None = None  # set when created


def order_payload(order_id: str, req: OrderRequest) -> dict[str, Any]:
    """The body of `POST {wms_url}/orders` (DESIGN §4)."""
    return {
        "order_id": order_id,
        "channel": req.channel,
        "external_id": req.external_id,
        "promised_by": req.promised_by.isoformat(),
        "ship_to": {
            "region": req.ship_to.region,
            "postal_code": req.ship_to.postal_code,
            "lat": req.ship_to.lat,
            "lon": req.ship_to.lon,
        },
        "lines": [{"sku": li.sku, "qty": li.qty} for li in req.lines],
    }


class OrderPipeline:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        sites: SiteStateCache,
        board: BreakerBoard,
        client: DcClient,
        metrics: Metrics,
        eta: EtaModel,
        config: PipelineConfig,
        clock: Callable[[], datetime],
    ) -> None:
        self._sessions = sessions
        self._intake = intake.Intake(sessions)
        self._sites = sites
        self._board = board
        self._client = client
        self._metrics = metrics
        self._eta = eta
        self._cfg = config
        self._clock = clock
        self._rnd = random.Random()

    # --- intake ---

    def submit(self, req: OrderRequest, request_hash: str | None = None) -> SubmitResult:
        """Store, route and dispatch one order; a repeat of (channel, external_id) does nothing.

        A repeat whose body differs from the first post's (`request_hash`) is refused with Conflict:
        answering with the first order would silently drop the second one's content.
        """
        order_id = str(uuid.uuid4())
        now = self._clock()
        # the snapshot may refresh from the database: take it before our transaction, since on
        # SQLite a second connection would wait for the write lock this one holds
        sites = self._sites.snapshot()
        trace = Trace()
        try:
            with self._metrics.routing_seconds.time(), self._intake.unit() as unit:
                first, rest = self._route_new(unit, trace, order_id, req, sites, now, request_hash)
        except IntegrityError:
            # the unique key (channel, external_id) refused a repeat, or a race with the first
            # post of it: nothing was written; answer with that first order. Not looked up
            # beforehand, since repeats are rare and the lookup would cost every order a statement.
            with self._sessions() as s:
                owner = repo.key_owner(s, req.channel, req.external_id)
            if owner is None:
                raise
            winner, first_hash = owner
            if request_hash and first_hash and first_hash != request_hash:
                raise Conflict(
                    f"order {req.external_id!r} of channel {req.channel!r} was already taken with "
                    "another body; nothing was changed",
                    rule="order_key_reused",
                    details={"channel": req.channel, "external_id": req.external_id, "order_id": winner},
                ) from None
            return SubmitResult(winner, created=False)
        self._metrics.orders_received.labels(req.channel).inc()
        if first is not None:
            payload = order_payload(order_id, req)
            self._dispatch_chain(trace, order_id, payload, first, rest, list(req.lines))
        return SubmitResult(order_id, created=True, trace=trace)

    def _route_new(
        self,
        unit: intake.IntakeUnit,
        trace: Trace,
        order_id: str,
        req: OrderRequest,
        sites: list[SiteState],
        now: datetime,
        request_hash: str | None = None,
    ) -> tuple[Candidate | None, list[Candidate]]:
        stock = unit.available_stock(li.sku for li in req.lines)
        decision = rank_candidates(req, sites, stock, now, self._eta)
        lease = now + timedelta(seconds=self._cfg.dispatch_lease_s)
        order = intake.NewOrder(order_id, req, now, lease, request_hash)
        lost: list[repo.Attempt] = []
        for i, cand in enumerate(decision.candidates):
            if unit.place(order, cand.site, cand.eta, lost):
                self._sites.note_routed(cand.site)
                trace.status, trace.site, trace.eta = OrderStatus.ROUTED, cand.site, cand.eta
                trace.attempts.extend(lost)
                return cand, list(decision.candidates[i + 1 :])
            lost.append(
                repo.Attempt(
                    now, cand.site, AttemptOutcome.NO_STOCK.value, "stock taken by a concurrent order"
                )
            )
        held = repo.Attempt(now, None, "held", f"no DC can take it: {decision.summary()}")
        unit.hold(intake.NewOrder(order_id, req, now, self._held_until(now, 1), request_hash), [held, *lost])
        trace.status = OrderStatus.HELD
        trace.attempts.extend([held, *lost])
        return None, []

    @staticmethod
    def _note(
        s: Session,
        trace: Trace,
        order_id: str,
        site: str | None,
        outcome: AttemptOutcome | str,
        reason: str,
        now: datetime,
        latency_ms: float | None = None,
    ) -> None:
        """Store one attempt and remember it for the answer."""
        attempt = repo.Attempt(now, site, str(outcome), reason, latency_ms)
        repo.add_attempt(s, order_id, attempt)
        trace.attempts.append(attempt)

    def _reserve_first(
        self, s: Session, candidates: Sequence[Candidate], lines: list[OrderLine]
    ) -> tuple[Candidate | None, list[Candidate], list[str]]:
        """Reserve at the best candidate that still has the stock; return it and the rest."""
        lost: list[str] = []
        for i, cand in enumerate(candidates):
            if repo.reserve(s, cand.site, lines):
                return cand, list(candidates[i + 1 :]), lost
            lost.append(cand.site)
        return None, [], lost

    def _held_until(self, now: datetime, attempts: int) -> datetime:
        delay = retry_delay_s(attempts, self._cfg.backoff_base_s, self._cfg.backoff_max_s, self._rnd)
        return now + timedelta(seconds=delay)

    # --- dispatch, reroute, hold ---

    def _dispatch_chain(
        self,
        trace: Trace,
        order_id: str,
        payload: dict[str, Any],
        first: Candidate,
        rest: list[Candidate],
        lines: list[OrderLine],
        origin: str | None = None,
        reposted: bool = False,
    ) -> None:
        """Offer the order to `first`, then to each of `rest`, until a DC takes it or it is held.

        `reposted`: `first` is the DC an earlier, unanswered POST went to (a dispatch lease ran out),
        so whatever this attempt's outcome there, that DC may hold the order and is owed a cancel
        if the order moves on.
        """
        current: Candidate | None = first
        origin = origin or first.site
        owed_at_first = first.site if reposted else None
        while current is not None:
            site = self._sites.site(current.site)
            result = dispatch_once(self._board, self._client, site, payload)
            if result.latency_ms is not None:
                self._metrics.dispatch_seconds.labels(site.code).observe(result.latency_ms / 1000)
            now = self._clock()
            if result.outcome is AttemptOutcome.ACCEPTED:
                self._record_accepted(trace, order_id, site.code, result, now)
                reason = "primary" if site.code == origin else "rerouted"
                self._metrics.orders_routed.labels(site.code, reason).inc()
                if site.code != origin:
                    self._metrics.orders_rerouted.labels(origin, site.code).inc()
                return
            needs_cancel = result.needs_cancel or site.code == owed_at_first
            failed = partial(
                self._after_failure,
                trace,
                len(trace.attempts),
                order_id,
                site.code,
                result,
                needs_cancel,
                rest,
                lines,
                now,
            )
            current, rest = retry_on_deadlock(failed)

    def _after_failure(
        self,
        trace: Trace,
        noted: int,
        order_id: str,
        site_code: str,
        result: DispatchResult,
        needs_cancel: bool,
        rest: list[Candidate],
        lines: list[OrderLine],
        now: datetime,
    ) -> tuple[Candidate | None, list[Candidate]]:
        """Record a failed DC call, release its reservation and reserve at the next candidate (or hold)."""
        del trace.attempts[noted:]  # a transaction retried after a deadlock notes its attempts again
        with self._sessions.begin() as s:
            row = repo.get_order(s, order_id, for_update=True)
            assert row is not None
            self._note(s, trace, order_id, site_code, result.outcome, result.reason, now, result.latency_ms)
            if row.site != site_code or row.status != OrderStatus.ROUTED.value:
                # a failover moved it while this call was out: the mover released the reservation
                # and owns the order now; only a copy this DC may hold is still ours to cancel
                if needs_cancel:
                    repo.add_cancel(s, order_id, site_code, f"left after: {result.reason}", now)
                return None, []
            row.attempts_count += 1
            row.updated_at = now
            repo.release(s, site_code, lines)
            if result.needs_cancel:
                repo.add_cancel(s, order_id, site_code, f"left after: {result.reason}", now)
            current, rest, lost = self._next_candidate(s, list(rest), lines)
            for lost_site in lost:
                self._note(
                    s, trace, order_id, lost_site, AttemptOutcome.NO_STOCK, "stock taken meanwhile", now
                )
            if current is None:
                row.status, row.site, row.eta, row.dc_ref = OrderStatus.HELD.value, None, None, None
                row.next_attempt_at = self._held_until(now, row.attempts_count)
                self._note(s, trace, order_id, None, "held", "every candidate DC failed or refused", now)
                trace.status, trace.site, trace.eta = OrderStatus.HELD, None, None
                log.warning("order held", extra={"order_id": order_id, "last_site": site_code})
            else:
                row.status, row.site, row.eta = OrderStatus.ROUTED.value, current.site, current.eta
                row.routed_at = now
                row.next_attempt_at = now + timedelta(seconds=self._cfg.dispatch_lease_s)
                trace.status, trace.site, trace.eta = OrderStatus.ROUTED, current.site, current.eta
                self._sites.note_routed(current.site)
        return current, rest

    def _record_accepted(
        self, trace: Trace, order_id: str, site: str, result: DispatchResult, now: datetime
    ) -> None:
        """Mark the order accepted, unless it was moved meanwhile: then the DC's copy is owed a cancel."""
        note = repo.Attempt(now, site, str(result.outcome), result.reason, result.latency_ms)
        with self._intake.unit() as unit:
            accepted = unit.record_accepted(order_id, site, result.dc_ref or "", note)
        trace.attempts.append(note)
        if accepted:
            trace.status, trace.dc_ref = OrderStatus.ACCEPTED, result.dc_ref
        else:
            log.warning("late acceptance cancelled", extra={"order_id": order_id, "site": site})

    def _next_candidate(
        self, s: Session, rest: list[Candidate], lines: list[OrderLine]
    ) -> tuple[Candidate | None, list[Candidate], list[str]]:
        # skip candidates whose breaker opened since the order was ranked: no point reserving there
        open_now = [c for c in rest if self._board.get(c.site).routable_state is not BreakerState.OPEN]
        return self._reserve_first(s, open_now, lines)

    # --- the retry loop: held orders, and routed orders whose dispatch lease ran out ---

    def redispatch_due(self) -> int:
        """Claim due orders and try them again; return how many were tried."""
        now = self._clock()
        lease = now + timedelta(seconds=self._cfg.dispatch_lease_s)
        with self._sessions.begin() as s:
            rows = repo.claim_due_orders(s, now, self._cfg.retry_batch)
            due = [(r.id, r.status, r.site) for r in rows]
            for r in rows:
                r.next_attempt_at = lease  # our lease: other replicas skip it until then
        for order_id, status, site in due:
            try:
                self._retry(order_id, status, site)
            except Exception:
                log.exception("retry of an order failed; it stays due", extra={"order_id": order_id})
        return len(due)

    def _retry(self, order_id: str, status: str, site: str | None) -> None:
        now = self._clock()
        sites = self._sites.snapshot()  # before the transaction, as in submit()
        trace = Trace()
        with self._sessions.begin() as s:
            row = repo.get_order(s, order_id, for_update=True)
            if row is None or row.status != status or row.site != site:
                return  # someone else moved it meanwhile (another replica, a failover)
            lines = repo.order_lines(s, order_id)
            avoid = repo.pending_cancel_sites(s, order_id)
            req = request_from_row(row, lines)
            stock = repo.available_stock(s, (li.sku for li in lines))
            decision = rank_candidates(req, sites, stock, now, self._eta, avoid=avoid)
            reposted = status == OrderStatus.ROUTED.value and site is not None
            origin: str | None = None
            if reposted and not repo.site_open(s, site):
                # the site stopped taking orders since (a failover that did not get to this order):
                # the unanswered POST may have reached it, so it is owed a cancel, and the order moves
                repo.release(s, site, lines)
                repo.add_cancel(s, order_id, site, "left: the site stopped taking orders", now)
                self._note(s, trace, order_id, site, "moved", f"{site} stopped taking orders", now)
                reposted, origin = False, site
            if reposted:
                # a dispatch that never finished (crash, lost answer): re-post to the same DC first,
                # it is idempotent on order_id; the reservation there is still held
                first = Candidate(site, row.eta or now, False, 0.0)
                rest = [c for c in decision.candidates if c.site != site]
                origin = site
            else:
                first_c, rest, lost = self._reserve_first(s, decision.candidates, lines)
                for lost_site in lost:
                    self._note(
                        s, trace, order_id, lost_site, AttemptOutcome.NO_STOCK, "stock taken meanwhile", now
                    )
                if first_c is None:
                    row.status, row.site, row.eta, row.dc_ref = OrderStatus.HELD.value, None, None, None
                    row.attempts_count += 1
                    row.next_attempt_at = self._held_until(now, row.attempts_count)
                    return
                first = first_c
                row.status, row.site, row.eta, row.routed_at = (
                    OrderStatus.ROUTED.value,
                    first.site,
                    first.eta,
                    now,
                )
                row.next_attempt_at = now + timedelta(seconds=self._cfg.dispatch_lease_s)
                self._sites.note_routed(first.site)
        payload = order_payload(order_id, req)
        self._dispatch_chain(
            trace, order_id, payload, first, rest, lines, origin=origin or first.site, reposted=reposted
        )

    # --- failover: move an in-flight order to the site a failover plan chose ---

    def move_order(self, order_id: str, from_site: str, assignment: Any, owes_cancel: bool) -> Trace | None:
        """Move an order off `from_site` to the planned target (or its ranked fallbacks), then dispatch.

        The caller has already asked the old DC to cancel; `owes_cancel` records, in the same
        transaction as the move, that it did not answer (the cancel outbox then keeps trying and the
        order is never routed back there while the cancel is pending). Returns None when the order
        is no longer in flight at `from_site` (shipped, moved or cancelled meanwhile).
        """
        now = self._clock()
        trace = Trace()
        moved = retry_on_deadlock(
            partial(self._move_reserve, trace, order_id, from_site, assignment, owes_cancel, now)
        )
        if moved is None:
            return None
        if moved[0] is None:
            return trace  # held: no site can take it now; the retry loop goes on
        first, rest, lines, req = moved
        self._dispatch_chain(
            trace, order_id, order_payload(order_id, req), first, rest, lines, origin=from_site
        )
        return trace

    def _move_reserve(
        self, trace: Trace, order_id: str, from_site: str, assignment: Any, owes_cancel: bool, now: datetime
    ) -> tuple[Candidate | None, list[Candidate], list[OrderLine], OrderRequest] | None:
        """The move's one transaction: release at the old site, reserve at the new one (or hold)."""
        trace.attempts.clear()  # a transaction retried after a deadlock notes its attempts again
        with self._sessions.begin() as s:
            row = repo.get_order(s, order_id, for_update=True)
            if row is None or row.site != from_site or row.status not in repo.LIVE_AT_DC:
                return None
            lines = repo.order_lines(s, order_id)
            req = request_from_row(row, lines)
            repo.release(s, from_site, lines)
            if owes_cancel:
                repo.add_cancel(s, order_id, from_site, "failover: the DC did not answer the cancel", now)
            planned = (
                [Candidate(assignment.to_site, assignment.eta, assignment.late, 0.0)]
                if assignment.to_site
                else []
            )
            first, rest, lost = self._reserve_first(s, [*planned, *assignment.fallbacks], lines)
            self._note(s, trace, order_id, from_site, "moved", f"failover of {from_site}", now)
            for lost_site in lost:
                self._note(
                    s, trace, order_id, lost_site, AttemptOutcome.NO_STOCK, "stock taken meanwhile", now
                )
            row.attempts_count += 1
            row.dc_ref, row.updated_at = None, now
            if first is None:
                row.status, row.site, row.eta = OrderStatus.HELD.value, None, None
                row.next_attempt_at = self._held_until(now, row.attempts_count)
                self._note(s, trace, order_id, None, "held", "no site can take it after the failover", now)
                trace.status = OrderStatus.HELD
                return None, [], lines, req
            row.status, row.site, row.eta, row.routed_at = (
                OrderStatus.ROUTED.value,
                first.site,
                first.eta,
                now,
            )
            row.next_attempt_at = now + timedelta(seconds=self._cfg.dispatch_lease_s)
            trace.status, trace.site, trace.eta = OrderStatus.ROUTED, first.site, first.eta
            self._sites.note_routed(first.site)
            return first, rest, lines, req


def request_from_row(row: OrderRow, lines: Sequence[OrderLine]) -> OrderRequest:
    return OrderRequest(
        channel=row.channel,
        external_id=row.external_id,
        customer=Customer(
            row.customer_id,
            row.customer_name,
            row.customer_email,
            row.customer_phone,
            row.customer_locale,
            row.notify_via,
        ),
        ship_to=ShipTo(row.ship_region, row.ship_postal_code, row.ship_lat, row.ship_lon),
        lines=tuple(lines),
        placed_at=row.placed_at,
        promised_by=row.promised_by,
    )

"""An order's entry points: intake, the retry loop (held orders, expired dispatch leases), a move.

Why several commits per order: the order, its routing decision and its stock reservation commit
together *before* the DC is called, so a crash between commit and DC call leaves a `routed`
order whose dispatch lease runs out and that the retry loop re-posts (DCs are idempotent on
order_id). Taking an order and recording its acknowledgement go through `fast_path` units (one
statement per step on PostgreSQL); every other change goes through the repository's transitions
in a session. Each entry point then hands the order to the dispatch chain (`dispatch`).

Never lost, never twice: an order no DC takes is `held` (kept, retried with backoff); an order
leaves a DC that may hold a copy only with a cancel owed there, in the same transaction.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from control_plane.domain import AttemptOutcome, Conflict, OrderRequest, OrderStatus, SiteState
from control_plane.orders import fast_path as intake
from control_plane.orders import repository as repo
from control_plane.orders.dispatch import PipelineConfig, Trace, order_payload
from control_plane.orders.moves import BatchMover
from control_plane.orders.slips import Slip, SlipReason
from failover.routing import Candidate, rank_candidates

__all__ = ["OrderPipeline", "PipelineConfig", "SubmitResult", "Trace"]

log = logging.getLogger("drctl.orders")


@dataclass(frozen=True, slots=True)
class SubmitResult:
    order_id: str
    created: bool  # False: a repeat of an order we already had; nothing was dispatched
    trace: Trace | None = None  # set when created


class OrderPipeline(BatchMover):
    """Intake, the retry loop and (from `BatchMover`) a failover's move, over one dispatch chain."""

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
        order = intake.NewOrder(order_id, req, now, self._lease_until(now), request_hash)
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

    # --- the retry loop: held orders, and routed orders whose dispatch lease ran out ---

    def redispatch_due(self) -> int:
        """Claim due orders and try them again; return how many were tried."""
        now = self._clock()
        with self._sessions.begin() as s:
            rows = repo.claim_due_orders(s, now, self._cfg.retry_batch, self._lease_until(now))
            due = [(r.id, r.status, r.site) for r in rows]
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
            req = repo.request_from_row(row, lines)
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
                    repo.hold(row, now, self._held_until(now, repo.count_attempt(row, now)))
                    if origin is not None:
                        self._slips.record(s, [Slip.of(row, None, origin, SlipReason.HELD)], now)
                    return
                first = first_c
                repo.route_to(row, first.site, first.eta, now, self._lease_until(now))
                self._sites.note_routed(first.site)
                if origin is not None:
                    self._slips.record(s, [Slip.of(row, first.eta, origin, SlipReason.MOVED)], now)
        payload = order_payload(order_id, req)
        self._dispatch_chain(
            trace, order_id, payload, first, rest, lines, origin=origin or first.site, reposted=reposted
        )

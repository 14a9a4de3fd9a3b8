"""The dispatch chain every entry point of an order ends in: offer it to a DC through its breaker,
record the answer, on failure release and reserve at the next candidate, or hold it.

No transaction is held open across a DC call: the answer is recorded in its own short one. When a
call failed in a way that may still have reached the DC (timeout, 5xx, broken connection, an
answer we cannot read) and the order moves on, a cancel for that DC is queued in the same
transaction (`dc_cancels`, an outbox), and the order is never routed back to a DC while a cancel
for it is pending there.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from control_plane.domain import AttemptOutcome, BreakerState, OrderLine, OrderRequest, OrderStatus
from control_plane.metrics import Metrics
from control_plane.orders import fast_path as intake
from control_plane.orders import repository as repo
from control_plane.orders.slips import NoSlips, Slip, SlipReason, SlipSink
from control_plane.store.db import retry_on_deadlock
from control_plane.world.state import SiteStateCache
from failover.backoff import retry_delay_s
from failover.breakers import BreakerBoard
from failover.dispatch import DcClient, DispatchResult, dispatch_once
from failover.eta import EtaModel
from failover.routing import Candidate

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


def order_payload(order_id: str, req: OrderRequest) -> dict[str, Any]:
    """The body of `POST {wms_url}/orders` (DESIGN §4): the order as its channel posted it, plus our
    id. A DC needs the recipient for its labels, and holding the whole order lets `drctl reconcile`
    re-import from a DC's ledger what a database restore lost (`OrderIn` reads it back)."""
    c = req.customer
    return {
        "order_id": order_id,
        "channel": req.channel,
        "external_id": req.external_id,
        "customer": {
            "id": c.id,
            "name": c.name,
            "email": c.email,
            "phone": c.phone,
            "locale": c.locale,
            "notify_via": c.notify_via,
        },
        "placed_at": req.placed_at.isoformat(),
        "promised_by": req.promised_by.isoformat(),
        "ship_to": {
            "region": req.ship_to.region,
            "postal_code": req.ship_to.postal_code,
            "lat": req.ship_to.lat,
            "lon": req.ship_to.lon,
        },
        "lines": [{"sku": li.sku, "qty": li.qty, "unit_price": str(li.unit_price)} for li in req.lines],
    }


class DispatchChain:
    """What intake, the retry loop and a failover's move share: the collaborators and the chain."""

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
        slips: SlipSink | None = None,
    ) -> None:
        self._sessions = sessions
        self._slips: SlipSink = slips or NoSlips()
        self._intake = intake.Intake(sessions)
        self._sites = sites
        self._board = board
        self._client = client
        self._metrics = metrics
        self._eta = eta
        self._cfg = config
        self._clock = clock
        self._rnd = random.Random()

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

    def _lease_until(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self._cfg.dispatch_lease_s)

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
            attempts = repo.count_attempt(row, now)
            repo.release(s, site_code, lines)
            if needs_cancel:
                repo.add_cancel(s, order_id, site_code, f"left after: {result.reason}", now)
            current, rest, lost = self._next_candidate(s, list(rest), lines)
            for lost_site in lost:
                self._note(
                    s, trace, order_id, lost_site, AttemptOutcome.NO_STOCK, "stock taken meanwhile", now
                )
            if current is None:
                repo.hold(row, now, self._held_until(now, attempts))
                self._note(s, trace, order_id, None, "held", "every candidate DC failed or refused", now)
                trace.status, trace.site, trace.eta = OrderStatus.HELD, None, None
                log.warning("order held", extra={"order_id": order_id, "last_site": site_code})
                self._slips.record(s, [Slip.of(row, None, site_code, SlipReason.HELD)], now)
            else:
                repo.route_to(row, current.site, current.eta, now, self._lease_until(now))
                trace.status, trace.site, trace.eta = OrderStatus.ROUTED, current.site, current.eta
                self._sites.note_routed(current.site)
                self._slips.record(s, [Slip.of(row, current.eta, site_code, SlipReason.REROUTED)], now)
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

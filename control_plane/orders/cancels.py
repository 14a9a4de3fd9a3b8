"""Deliver the DC cancel outbox: make sure a DC we left does not keep a copy of an order.

A 404 from a DC right after a timed-out POST is not proof: the slow POST may still be running
there. A cancel is therefore confirmed by 404 only once `settle_s` has passed since it was queued
(`failover.dispatch.proves_absent`, the rule a failover's move follows too); until then it is asked
again. A 200 (cancelled) confirms at once; a 409 (already shipped) is a
conflict an operator must see.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from control_plane.orders import repository as repo
from control_plane.store.tables import DcCancelRow
from control_plane.world.state import SiteStateCache
from failover.backoff import retry_delay_s
from failover.dispatch import CancelOutcome, DcClient, DcRejected, DcUnavailable, proves_absent

log = logging.getLogger("drctl.cancels")


@dataclass(frozen=True, slots=True)
class CancelConfig:
    settle_s: float
    timeout_s: float
    backoff_base_s: float
    backoff_max_s: float
    batch: int


class CancelOutbox:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        sites: SiteStateCache,
        client: DcClient,
        config: CancelConfig,
        clock: Callable[[], datetime],
    ) -> None:
        self._sessions = sessions
        self._sites = sites
        self._client = client
        self._cfg = config
        self._clock = clock
        self._rnd = random.Random()

    def process_due(self) -> int:
        """Send every due cancel once; return how many were tried."""
        now = self._clock()
        with self._sessions.begin() as s:
            rows = repo.claim_due_cancels(s, now, self._cfg.batch)
            due = [(r.order_id, r.site, r.created_at, r.attempts) for r in rows]
            for r in rows:
                # lease: longer than one cancel call, so another replica does not send it too
                r.next_attempt_at = now + timedelta(seconds=self._cfg.timeout_s * 2)
        for order_id, site, created_at, attempts in due:
            self._cancel_one(order_id, site, created_at, attempts)
        return len(due)

    def flush_site(self, site: str) -> int:
        """Send every pending cancel owed by `site` now (a failback does this before reopening it).

        Returns how many are still pending afterwards: the DC did not answer, or it answered 404
        too soon after the move to be trusted (see the module docstring).
        """
        with self._sessions() as s:
            owed = [(r.order_id, r.created_at, r.attempts) for r in repo.cancels_owed_by(s, site)]
        for order_id, created_at, attempts in owed:
            self._cancel_one(order_id, site, created_at, attempts)
        with self._sessions() as s:
            return len(repo.cancels_owed_by(s, site))

    def _cancel_one(self, order_id: str, site_code: str, created_at: datetime, attempts: int) -> None:
        with self._sessions() as s:
            order = repo.get_order(s, order_id)
            lives_here = order is not None and order.site == site_code and order.status in repo.LIVE_AT_DC
        if lives_here:
            self._finish(order_id, site_code, "superseded", "the order lives at this DC again")
            return
        error: str | None = None
        outcome: CancelOutcome | None = None
        try:
            outcome = self._client.cancel(self._sites.site(site_code), order_id)
        except (DcUnavailable, DcRejected) as exc:
            error = str(exc)
        now = self._clock()
        if outcome is CancelOutcome.CANCELLED:
            self._finish(order_id, site_code, "done", "cancelled at the DC")
        elif outcome is CancelOutcome.UNKNOWN and proves_absent(outcome, created_at, now, self._cfg.settle_s):
            # the cancel was queued after the last POST that may have gone there: settle from then
            self._finish(order_id, site_code, "done", "the DC does not hold it")
        elif outcome is CancelOutcome.SHIPPED:
            log.error(
                "order shipped by a DC it was moved away from",
                extra={"order_id": order_id, "site": site_code},
            )
            self._finish(order_id, site_code, "conflict", "the DC had already shipped it")
        else:
            self._postpone(order_id, site_code, created_at, attempts + 1, error)

    def _finish(self, order_id: str, site: str, status: str, note: str) -> None:
        with self._sessions.begin() as s:
            row = s.get(DcCancelRow, (order_id, site))
            if row is None or row.status != "pending":
                return
            row.status, row.done_at, row.last_error = status, self._clock(), note
            row.attempts += 1

    def _postpone(
        self, order_id: str, site: str, created_at: datetime, attempts: int, error: str | None
    ) -> None:
        now = self._clock()
        if error is None:
            # 404 before the settle time: ask again once it has passed
            when = max(now, created_at + timedelta(seconds=self._cfg.settle_s))
        else:
            when = now + timedelta(
                seconds=retry_delay_s(attempts, self._cfg.backoff_base_s, self._cfg.backoff_max_s, self._rnd)
            )
        with self._sessions.begin() as s:
            row = s.get(DcCancelRow, (order_id, site))
            if row is None or row.status != "pending":
                return
            row.attempts, row.last_error, row.next_attempt_at = attempts, error, when

"""The DC cancel outbox: make sure a DC we left does not keep a copy of an order.

Rows of `dc_cancels` go through the shared outbox worker (`store.outbox`), lane = the DC, behind
the breaker of that DC's cancel calls (`failover.dispatch.cancel_breaker`). A 404 from a DC right
after a timed-out POST is not proof: the slow POST may still be running there. A cancel is
therefore confirmed by 404 only once `settle_s` has passed since it was queued
(`failover.dispatch.proves_absent`, the rule a failover's move follows too); until then it is asked
again. A 200 (cancelled) confirms at once; a 409 (already shipped) is a conflict an operator must
see. A cancel is never given up: the DC keeps being asked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from control_plane.orders import repository as repo
from control_plane.store.outbox import (
    Finished,
    Item,
    OutboxError,
    OutboxPolicy,
    OutboxTable,
    OutboxWorker,
    Outcome,
    Retry,
)
from control_plane.store.tables import DcCancelRow
from control_plane.world.state import SiteStateCache
from failover.breakers import BreakerBoard
from failover.dispatch import (
    CancelOutcome,
    DcClient,
    DcRejected,
    DcUnavailable,
    cancel_breaker,
    proves_absent,
)

log = logging.getLogger("drctl.cancels")

CANCELS: OutboxTable[None] = OutboxTable(
    row=DcCancelRow, lane="site", done_at="done_at", payload=lambda row: None, breaker_name=cancel_breaker
)


@dataclass(frozen=True, slots=True)
class CancelConfig:
    settle_s: float
    timeout_s: float
    backoff_base_s: float
    backoff_max_s: float
    batch: int


class DcCancelSender:
    """One DELETE {wms_url}/orders/{id} for one owed cancel, read as the module docstring says."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        sites: SiteStateCache,
        client: DcClient,
        settle_s: float,
        clock: Callable[[], datetime],
    ) -> None:
        self._sessions = sessions
        self._sites = sites
        self._client = client
        self._settle_s = settle_s
        self._clock = clock

    def send(self, item: Item[None]) -> Outcome:
        order_id, site_code = item.key
        with self._sessions() as s:
            order = repo.get_order(s, order_id)
            lives_here = order is not None and order.site == site_code and order.status in repo.LIVE_AT_DC
        if lives_here:
            return Finished("superseded", "the order lives at this DC again")
        try:
            outcome = self._client.cancel(self._sites.site(site_code), order_id)
        except DcUnavailable as exc:
            raise OutboxError(str(exc)) from None  # names the failure kind only: no URL, no body
        except DcRejected as exc:
            return Retry(str(exc)[:500])  # the DC answered: not a breaker failure
        now = self._clock()
        if outcome is CancelOutcome.CANCELLED:
            return Finished("done", "cancelled at the DC")
        if outcome is CancelOutcome.SHIPPED:
            log.error(
                "order shipped by a DC it was moved away from",
                extra={"order_id": order_id, "site": site_code},
            )
            return Finished("conflict", "the DC had already shipped it")
        if proves_absent(outcome, item.created_at, now, self._settle_s):
            return Finished("done", "the DC does not hold it")
        # 404 before the settle time: ask again once it has passed
        return Retry(None, max(now, item.created_at + timedelta(seconds=self._settle_s)))


class CancelOutbox:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        sites: SiteStateCache,
        client: DcClient,
        breakers: BreakerBoard,
        config: CancelConfig,
        clock: Callable[[], datetime],
    ) -> None:
        policy = OutboxPolicy(
            # longer than a batch of cancel calls at worst, so another replica does not send it too
            lease_s=config.timeout_s * 2 + 5,
            batch=config.batch,
            max_attempts=None,
            backoff_base_s=config.backoff_base_s,
            backoff_max_s=config.backoff_max_s,
            breaker_wait_s=config.backoff_base_s,
        )
        sender = DcCancelSender(sessions, sites, client, config.settle_s, clock)
        self._worker = OutboxWorker("dc-cancels", sessions, CANCELS, sender, breakers, policy, clock)
        self._batch = config.batch

    def process_due(self) -> int:
        """Send every due cancel once; return how many were settled (done, superseded, conflict)."""
        return self._worker.run_once()

    def flush_site(self, site: str) -> int:
        """Send every pending cancel owed by `site` now (a failback does this before reopening it).

        Returns how many are still pending afterwards: the DC did not answer, or it answered 404
        too soon after the move to be trusted (see the module docstring).
        """
        for _ in range(self._worker.pending(site) // self._batch + 1):
            self._worker.run_once(site, due_only=False)
        return self._worker.pending(site)

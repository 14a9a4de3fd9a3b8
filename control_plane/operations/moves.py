"""Move a failed-over site's in-flight orders off it: cancel at the old DC, move, dispatch; then sweep.

Moves run `parallelism` at a time; every call to the old DC goes through its breaker, so a DC
that is down or partitioned costs at most a breaker's worth of timeouts before the rest are owed
cancels at once. After the planned orders, the site is read again and anything still live there
is moved too (sweeps), until nothing is left or the sweeps run out; the report says how many
live orders are left (0 unless something keeps putting orders there).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import partial
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from control_plane.domain import OrderStatus, Site, SiteState
from control_plane.orders import repository as order_repo
from control_plane.orders.moves import Move, MoveItem
from control_plane.orders.service import OrderPipeline
from control_plane.world.state import SiteStateCache
from failover.breakers import BreakerBoard
from failover.dispatch import CancelOutcome, DcClient, cancel_once, proves_absent
from failover.eta import EtaModel
from failover.plan import Assignment, InFlightOrder, plan_failover

log = logging.getLogger("drctl.operations")
MAX_SWEEPS = 5


class Moved(StrEnum):
    TO_TARGET = "moved"
    HELD = "held"
    SHIPPED = "shipped"  # it left the old DC before we could stop it: nothing to move
    GONE = "gone"  # no longer live at the site when its turn came (moved, cancelled, shipped)


@dataclass
class MoveReport:
    per_target: Counter[str] = field(default_factory=Counter)
    cancel_pending_per_target: Counter[str] = field(default_factory=Counter)
    held: int = 0
    cancel_pending: int = 0
    shipped: int = 0
    sweeps: int = 0
    live_left: int = 0
    seconds: float = 0.0

    def add(self, outcome: Moved, target: str | None, owes_cancel: bool) -> None:
        if outcome is Moved.SHIPPED:
            self.shipped += 1
            return
        if outcome is Moved.GONE:
            return
        self.cancel_pending += owes_cancel
        if outcome is Moved.HELD or target is None:
            self.held += 1
            return
        self.per_target[target] += 1
        self.cancel_pending_per_target[target] += owes_cancel

    @property
    def moved(self) -> int:
        return sum(self.per_target.values())

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "per_target": dict(self.per_target),
            "targets": {
                t: {"moved": n, "cancel_pending": self.cancel_pending_per_target[t]}
                for t, n in self.per_target.items()
            },
            "held": self.held,
            "cancel_pending": self.cancel_pending,
            "shipped": self.shipped,
            "live_left": self.live_left,
            "sweeps": self.sweeps,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True, slots=True)
class MoveConfig:
    parallelism: int  # DC calls at once
    settle_s: float
    batch: int = 100  # orders per move transaction


class SiteMover:
    """Moves every live order off one site, planned first, then swept until none is left."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        sites: SiteStateCache,
        board: BreakerBoard,
        client: DcClient,
        pipeline: OrderPipeline,
        eta: EtaModel,
        config: MoveConfig,
        clock: Callable[[], datetime],
    ) -> None:
        self._sessions = sessions
        self._sites = sites
        self._board = board
        self._client = client
        self._pipeline = pipeline
        self._eta = eta
        self._cfg = config
        self._clock = clock

    def in_flight(self, code: str) -> list[InFlightOrder]:
        with self._sessions() as s:
            return [
                InFlightOrder.from_request(
                    row.id, code, OrderStatus(row.status), order_repo.request_from_row(row, lines), avoid
                )
                for row, lines, avoid in order_repo.in_flight_at(s, code)
            ]

    def stock_for(
        self, orders: Sequence[InFlightOrder], more_skus: Iterable[str] = ()
    ) -> dict[tuple[str, str], int]:
        """Free stock at every site of the SKUs the orders hold, and of `more_skus`."""
        skus = {line.sku for o in orders for line in o.lines} | set(more_skus)
        if not skus:
            return {}
        with self._sessions() as s:
            return order_repo.available_stock(s, skus)

    def move_all(
        self,
        code: str,
        planned: Sequence[Assignment],
        statuses: dict[str, OrderStatus],
        targets: Sequence[str] | None,
        heartbeat: Callable[[], None],
    ) -> MoveReport:
        """Move the planned orders, then sweep the site until no live order is left there."""
        started = time.monotonic()
        report = MoveReport()
        batch, kinds = list(planned), dict(statuses)
        with ThreadPoolExecutor(self._cfg.parallelism, thread_name_prefix="drctl-move") as pool:
            for sweep in range(MAX_SWEEPS + 1):
                if sweep:
                    left = self.in_flight(code)
                    if not left:
                        break
                    report.sweeps = sweep
                    log.warning("failover of %s: %d orders still there, sweep %d", code, len(left), sweep)
                    batch, kinds = self._plan(code, left, targets), {o.order_id: o.status for o in left}
                self._move(pool, self._sites.site(code), batch, kinds, report, heartbeat)
        with self._sessions() as s:
            report.live_left = order_repo.live_count_at(s, code)
        report.seconds = time.monotonic() - started
        return report

    def _move(
        self,
        pool: ThreadPoolExecutor,
        site: Site,
        planned: Sequence[Assignment],
        kinds: dict[str, OrderStatus],
        report: MoveReport,
        heartbeat: Callable[[], None],
    ) -> None:
        """Per batch: cancel at the old DC (in parallel), move in one transaction, then dispatch (in
        parallel, while the next batch's cancels and move go on)."""
        dispatching: list[tuple[Future[Move], bool]] = []
        cancel = partial(self._cancel, site, kinds=kinds)
        for start in range(0, len(planned), self._cfg.batch):
            items: list[MoveItem] = []
            for a, shipped, owes in pool.map(cancel, planned[start : start + self._cfg.batch]):
                if shipped:
                    report.add(Moved.SHIPPED, None, False)
                else:
                    items.append(MoveItem(a, owes))
            for move, item in zip(self._pipeline.move_batch(site.code, items), items, strict=True):
                if move.gone:
                    report.add(Moved.GONE, None, False)
                elif move.send is None:
                    report.add(Moved.HELD, None, item.owes_cancel)
                else:
                    dispatching.append((pool.submit(move.dispatch), item.owes_cancel))
            heartbeat()
        for future, owes in dispatching:
            trace = future.result().trace
            if trace.site is None or trace.status is OrderStatus.HELD:
                report.add(Moved.HELD, None, owes)
            else:
                report.add(Moved.TO_TARGET, trace.site, owes)
            heartbeat()

    def _cancel(
        self, site: Site, a: Assignment, *, kinds: dict[str, OrderStatus]
    ) -> tuple[Assignment, bool, bool]:
        """Ask the old DC to cancel; return (the assignment, it had shipped, it is still owed a cancel)."""
        outcome = cancel_once(self._board, self._client, site, a.order_id)
        if outcome is CancelOutcome.SHIPPED:
            return a, True, False
        # an order the DC acknowledged has no POST of ours in flight there; a routed one may have
        last_post = None if kinds.get(a.order_id) is OrderStatus.ACCEPTED else self._clock()
        return a, False, not proves_absent(outcome, last_post, self._clock(), self._cfg.settle_s)

    def _plan(
        self, code: str, orders: list[InFlightOrder], targets: Sequence[str] | None
    ) -> list[Assignment]:
        self._sites.refresh()
        states: list[SiteState] = self._sites.snapshot()
        plan = plan_failover(code, orders, states, self.stock_for(orders), targets, self._eta, self._clock())
        return list(plan.assignments)

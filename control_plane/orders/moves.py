"""A failover's move of many orders off one site: one transaction per batch, then each dispatched.

The batch releases the orders' units at the old site, reserves them at their planned targets (or
the next-ranked fallbacks, or holds them), queues the cancels the old DC still owes and notes the
attempts: a few statements for the whole batch, with each stock row locked once. The DC calls
come after the commit, one order at a time, through the same dispatch chain as intake.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from control_plane.domain import AttemptOutcome, OrderLine, OrderStatus
from control_plane.orders import repository as repo
from control_plane.orders.dispatch import DispatchChain, Trace, order_payload
from control_plane.orders.repository import batches
from control_plane.orders.slips import Slip, SlipReason
from control_plane.store.db import retry_on_deadlock
from failover.plan import Assignment
from failover.routing import Candidate

FAILOVER_CANCEL = "failover: the DC did not answer the cancel"


@dataclass(frozen=True, slots=True)
class MoveItem:
    assignment: Assignment
    owes_cancel: bool  # the old DC did not confirm the cancel: it is owed one (outbox)


@dataclass
class Move:
    """What a batch did to one order. `gone`: it was no longer live at the old site (shipped, moved
    or cancelled meanwhile) and nothing was done. A routed one still has to be `dispatch`ed."""

    order_id: str
    trace: Trace = field(default_factory=Trace)
    gone: bool = False
    send: Callable[[], None] | None = None

    def dispatch(self) -> Move:
        if self.send is not None:
            self.send()
            self.send = None
        return self


@dataclass(frozen=True, slots=True)
class Allocation:
    first: Candidate | None  # None: no candidate had the units (or took orders): hold it
    rest: list[Candidate]
    lost: list[str]  # candidates tried before `first` that could not take it


def allocate(
    orders: Sequence[tuple[list[OrderLine], Sequence[Candidate]]],
    free: dict[tuple[str, str], int],
    open_sites: set[str],
) -> list[Allocation]:
    """Each order to its first candidate that is open and has every line's units, in order;
    `free` is drawn down as it goes, so later orders see what earlier ones took."""
    out: list[Allocation] = []
    for lines, candidates in orders:
        need: Counter[str] = Counter()
        for line in lines:
            need[line.sku] += line.qty
        lost: list[str] = []
        chosen: Allocation | None = None
        for i, cand in enumerate(candidates):
            if cand.site in open_sites and all(free.get((cand.site, s), 0) >= q for s, q in need.items()):
                for sku, qty in need.items():
                    free[(cand.site, sku)] -= qty
                chosen = Allocation(cand, list(candidates[i + 1 :]), lost)
                break
            lost.append(cand.site)
        out.append(chosen or Allocation(None, [], lost))
    return out


class BatchMover(DispatchChain):
    """Moves batches of orders off one site; the dispatch of each moved order is the caller's to run."""

    def move_batch(self, from_site: str, items: Sequence[MoveItem]) -> list[Move]:
        now = self._clock()
        return retry_on_deadlock(partial(self._move_batch, from_site, items, now))

    def _move_batch(self, from_site: str, items: Sequence[MoveItem], now: datetime) -> list[Move]:
        by_id = {it.assignment.order_id: it for it in items}
        moves = {order_id: Move(order_id, gone=True) for order_id in by_id}
        with self._sessions.begin() as s:
            rows = batches.lock_live_at(s, from_site, sorted(by_id))
            if not rows:
                return list(moves.values())
            lines = batches.lines_of(s, [r.id for r in rows])
            candidates = {r.id: _candidates(by_id[r.id].assignment) for r in rows}
            release: Counter[tuple[str, str]] = Counter()
            for r in rows:
                for line in lines[r.id]:
                    release[(from_site, line.sku)] -= line.qty
            sites = {c.site for cands in candidates.values() for c in cands}
            skus = {line.sku for r in rows for line in lines[r.id]}
            open_now = batches.open_sites(s, sites)
            free = batches.lock_free_stock(s, open_now, skus)
            picks = allocate([(lines[r.id], candidates[r.id]) for r in rows], free, open_now)
            reserve: Counter[tuple[str, str]] = Counter()
            routed: list[tuple[str, str, datetime]] = []
            held: list[tuple[str, datetime]] = []
            notes: list[tuple[str, repo.Attempt]] = []
            slips: list[Slip] = []
            for r, pick in zip(rows, picks, strict=True):
                move = moves[r.id] = Move(r.id)
                trace = move.trace
                trace.attempts.append(repo.Attempt(now, from_site, "moved", f"failover of {from_site}"))
                for lost_site in pick.lost:
                    reason = "stock taken meanwhile" if lost_site in open_now else "stopped taking orders"
                    trace.attempts.append(repo.Attempt(now, lost_site, AttemptOutcome.NO_STOCK.value, reason))
                if pick.first is None:
                    slips.append(Slip.of(r, None, from_site, SlipReason.HELD))
                    held.append((r.id, self._held_until(now, r.attempts_count + 1)))
                    trace.attempts.append(
                        repo.Attempt(now, None, "held", "no site can take it after the failover")
                    )
                    trace.status = OrderStatus.HELD
                else:
                    for line in lines[r.id]:
                        reserve[(pick.first.site, line.sku)] += line.qty
                    routed.append((r.id, pick.first.site, pick.first.eta))
                    slips.append(Slip.of(r, pick.first.eta, from_site, SlipReason.MOVED))
                    trace.status, trace.site, trace.eta = OrderStatus.ROUTED, pick.first.site, pick.first.eta
                    payload = order_payload(r.id, repo.request_from_row(r, lines[r.id]))
                    move.send = partial(
                        self._dispatch_chain, trace, r.id, payload, pick.first, pick.rest, lines[r.id],
                        origin=from_site,
                    )  # fmt: skip
                notes.extend((r.id, a) for a in trace.attempts)
            release.update(reserve)  # update() keeps the negative counts that + would drop
            batches.change_reserved(s, release)
            owed = [r.id for r in rows if by_id[r.id].owes_cancel]
            batches.add_cancels(s, owed, from_site, FAILOVER_CANCEL, now)
            batches.route_many(s, routed, held, now, self._lease_until(now))
            batches.add_attempts(s, notes)
            self._slips.record(s, slips, now)
        for _, site, _ in routed:
            self._sites.note_routed(site)
        return [moves[order_id] for order_id in by_id]


def _candidates(a: Assignment) -> list[Candidate]:
    planned = (
        [Candidate(a.to_site, a.eta, a.late, 0.0)] if a.to_site is not None and a.eta is not None else []
    )
    return [*planned, *a.fallbacks]

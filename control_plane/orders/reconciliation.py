"""`drctl reconcile`: read every DC's ledger, compare it order by order with the store, and on
request repair what differs (the rules live in `failover.reconcile`).

The ledgers are read before the store, and an order the store changed after that read is settling,
not a finding: the DC gets an order only after the store committed it, so every order a DC lists
is already visible to the store's read unless the store lost it (a restore). Each repair runs in
its own short transaction under the order's row lock and first checks that the order is still as
compared; no transaction is open across a DC call. A repair needs every DC's ledger: with one
unreadable, a re-import or adoption could duplicate an order that DC holds, so it is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from control_plane.auth import repository as audit_log
from control_plane.domain import Actor, Conflict, InvalidInput, OrderStatus, Site
from control_plane.orders import repository as repo
from control_plane.orders.lifecycle import DcEvent, DcEventKind, EventOutcome, build_lifecycle
from control_plane.orders.repository.reconcile import StoreRecord, adopt, import_order, store_records
from control_plane.orders.schemas import OrderIn
from control_plane.store.db import retry_on_deadlock
from control_plane.store.tables import OrderRow
from failover.dispatch import CancelOutcome, DcRejected, DcUnavailable
from failover.reconcile import Action, DcCopy, Finding, Holding, Kind, LedgerReader, StoreCopy, compare

if TYPE_CHECKING:
    from control_plane.context import AppContext  # the type only: the context is built above every area

log = logging.getLogger("drctl.reconcile")

RECONCILED = "reconciled"  # the timeline outcome of every repair (route_attempts.outcome)
# a DC's clock may lag ours: ask for its orders from this much before `since`
DC_CLOCK_MARGIN = timedelta(minutes=10)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class SiteReading:
    site: str
    listed: int = 0
    error: str | None = None


@dataclass
class Entry:
    """One finding, with both sides as read, and what a repair did about it."""

    finding: Finding
    store_status: str | None
    store_site: str | None
    holders: list[Holding]
    outcome: str | None = None
    repaired: bool = False


@dataclass
class Report:
    started_at: datetime
    since: datetime | None
    sites: list[SiteReading]
    compared: int = 0
    settling: int = 0
    unverified: int = 0  # orders the store has at a DC whose ledger could not be read
    entries: list[Entry] = field(default_factory=list)
    repair: bool = False

    @property
    def unreadable(self) -> list[str]:
        return [r.site for r in self.sites if r.error is not None]

    @property
    def counts(self) -> dict[str, int]:
        counts = {kind.value: 0 for kind in Kind}
        for entry in self.entries:
            counts[entry.finding.kind.value] += 1
        return counts

    @property
    def clean(self) -> bool:
        """Store and ledgers agree (or every difference was repaired), and every ledger was read."""
        return not self.unreadable and all(e.repaired for e in self.entries)


class Reconciler:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        sites: Callable[[], list[Site]],
        reader: LedgerReader,
        cancel_at_dc: Callable[[Site, str], CancelOutcome],
        record_shipment: Callable[[str, str], tuple[str, bool]],
        clock: Callable[[], datetime],
        default_promise_hours: float,
    ) -> None:
        self._sessions = sessions
        self._sites = sites
        self._reader = reader
        self._cancel_at_dc = cancel_at_dc
        self._record_shipment = record_shipment
        self._clock = clock
        self._promise_hours = default_promise_hours

    # --- check ---

    def check(self, since: datetime | None) -> Report:
        """Compare every DC's ledger with the store; orders received or changed since `since`
        (None: all of them)."""
        started = self._clock()
        sites = {site.code: site for site in self._sites()}
        report = Report(started, since, [SiteReading(code) for code in sites])
        holdings: dict[str, list[Holding]] = {}
        dc_since = None if since is None else since - DC_CLOCK_MARGIN
        for reading in report.sites:
            try:
                for copy in self._reader.list_orders(sites[reading.site], dc_since):
                    holdings.setdefault(copy.order_id, []).append(copy.holding)
                    reading.listed += 1
            except (DcUnavailable, DcRejected) as exc:
                reading.error = str(exc)
                log.warning("reconcile: %s's ledger unreadable: %s", reading.site, exc)
        with self._sessions() as s:
            records = store_records(s, holdings.keys(), since or _EPOCH)
        if since is not None:
            # the listing covers what a DC received since then; an older copy is asked for by id
            self._look_up_older(report, records, holdings, sites)
        unreadable = set(report.unreadable)
        for order_id in sorted(holdings.keys() | records.keys()):
            record = records.get(order_id)
            if record is not None and record.site in unreadable:
                report.unverified += 1
                continue
            store = None if record is None else _store_copy(record, started)
            report.compared += 1
            if store is not None and store.settling:
                report.settling += 1
                continue
            finding = compare(order_id, store, holdings.get(order_id, []))
            if finding is not None:
                report.entries.append(
                    Entry(
                        finding,
                        None if record is None else record.status,
                        None if record is None else record.site,
                        holdings.get(order_id, []),
                    )
                )
        return report

    def _look_up_older(
        self,
        report: Report,
        records: dict[str, StoreRecord],
        holdings: dict[str, list[Holding]],
        sites: dict[str, Site],
    ) -> None:
        readings = {r.site: r for r in report.sites}
        for record in records.values():
            site = record.site
            reading = readings.get(site or "")
            if (
                reading is None
                or reading.error is not None
                or _store_copy(record, report.started_at).settling
            ):
                continue
            assert site is not None
            if any(h.site == site for h in holdings.get(record.id, [])):
                continue
            try:
                copy = self._reader.get_order(sites[site], record.id)
            except (DcUnavailable, DcRejected) as exc:
                log.warning("reconcile: %s did not answer for %s: %s", site, record.id, exc)
                reading.error = f"{exc} (asked for {record.id})"
                continue
            if copy is not None:
                holdings.setdefault(record.id, []).append(copy.holding)

    # --- repair ---

    def repair(self, report: Report, actor: Actor, reason: str) -> Report:
        """Carry out each finding's repair; refused (nothing written) when a ledger was unreadable."""
        if report.unreadable:
            raise Conflict(
                f"cannot repair: the ledger of {', '.join(report.unreadable)} could not be read, and a "
                "repair without it could duplicate an order it holds; nothing was changed",
                rule="ledgers_unreadable",
                details={"sites": report.unreadable},
            )
        report.repair = True
        sites = {site.code: site for site in self._sites()}
        done: dict[str, str] = {}
        for entry in report.entries:
            try:
                entry.outcome, entry.repaired = self._repair(entry, sites, actor, reason)
            except (DcUnavailable, DcRejected) as exc:
                entry.outcome, entry.repaired = f"a DC did not answer: {exc}; run again", False
            if entry.repaired:
                done[entry.finding.order_id] = entry.finding.action.value
            log.info(
                "reconcile %s: %s -> %s",
                entry.finding.order_id,
                entry.finding.kind.value,
                entry.outcome,
                extra={"order_id": entry.finding.order_id, "actor": actor.name},
            )
        with self._sessions.begin() as s:
            audit_log.audit(
                s,
                self._clock(),
                actor.name,
                "orders.reconcile",
                "orders",
                after={"repaired": done, "findings": report.counts},
                reason=reason,
                idempotency_key=actor.idempotency_key,
            )
        return report

    def _repair(self, entry: Entry, sites: dict[str, Site], actor: Actor, reason: str) -> tuple[str, bool]:
        f = entry.finding
        why = f"by {actor.name} (reconcile): {reason}"
        if f.action is Action.IMPORT:
            assert f.keep is not None
            return self._import(f, sites, why)
        if f.action is Action.RECORD_SHIPMENT:
            assert f.keep is not None
            if f.cancel_at:  # the copies at other DCs first, while the order still reads as compared
                text, ok = retry_on_deadlock(partial(self._change_stored, entry, why))
                if not ok:
                    return text, False
            return self._record_shipment(f.keep.site, f.order_id)
        if f.action is Action.NONE:
            return f"left for an operator: {f.detail}", False
        return retry_on_deadlock(partial(self._change_stored, entry, why))

    def _change_stored(self, entry: Entry, why: str) -> tuple[str, bool]:
        f = entry.finding
        now = self._clock()
        with self._sessions.begin() as s:
            row = repo.lock_order(s, f.order_id)
            if row is None or row.status != entry.store_status or row.site != entry.store_site:
                return "changed since it was compared: run again", False
            if f.action is Action.REDISPATCH:
                site = row.site
                assert site is not None
                repo.route_to(row, site, row.eta or now, now, lease_until=now)
                _note(s, row.id, site, f"not held by {site}: dispatched again {why}", now)
                return f"dispatched again to {site}", True
            if f.action is Action.ADOPT:
                assert f.keep is not None
                raised = adopt(
                    s,
                    row,
                    repo.order_lines(s, row.id),
                    f.keep.site,
                    f.keep.dc_ref,
                    f.keep.status.value == "shipped",
                    now,
                )
                _note(s, row.id, f.keep.site, f"adopted where {f.keep.site} holds it {why}", now)
                self._owe_cancels(s, row, f.cancel_at, why, now)
                return _with_stock(f"now at {f.keep.site}", raised), True
            self._owe_cancels(s, row, f.cancel_at, why, now)
            return f"cancel queued at {', '.join(f.cancel_at)}", True

    def _import(self, f: Finding, sites: dict[str, Site], why: str) -> tuple[str, bool]:
        keep = f.keep
        assert keep is not None
        copy = self._reader.get_order(sites[keep.site], f.order_id)
        if copy is None or not copy.holding.live:
            return f"no longer held by {keep.site}: run again", False
        try:
            req = _request_from(copy, self._clock(), self._promise_hours)
        except (ValidationError, InvalidInput) as exc:
            return f"cannot re-import from {keep.site}'s copy: {_first_error(exc)}", False
        try:
            return retry_on_deadlock(partial(self._insert, f, copy, req, why))
        except IntegrityError:
            return self._duplicate_of_key(f, copy, req.channel, req.external_id, sites)

    def _insert(self, f: Finding, copy: DcCopy, req: Any, why: str) -> tuple[str, bool]:
        now = self._clock()
        h = copy.holding
        with self._sessions.begin() as s:
            if repo.get_order(s, f.order_id) is not None:
                return "the store has it now: run again", False
            raised = import_order(s, f.order_id, req, h.site, h.dc_ref, h.status.value == "shipped", now)
            _note(s, f.order_id, h.site, f"re-imported from {h.site}'s ledger {why}", now)
            row = s.get(OrderRow, f.order_id)
            assert row is not None
            self._owe_cancels(s, row, f.cancel_at, why, now)
        return _with_stock(f"re-imported at {h.site} ({h.status.value})", raised), True

    def _duplicate_of_key(
        self, f: Finding, copy: DcCopy, channel: str, external_id: str, sites: dict[str, Site]
    ) -> tuple[str, bool]:
        """The channel's key belongs to another order now (it re-posted after the restore): the DCs'
        copies of this one are duplicates, cancelled there directly (the outbox needs a stored order)."""
        with self._sessions() as s:
            other = repo.find_id_by_key(s, channel, external_id)
        if other is None:
            return "could not be stored: run again", False
        holders = [site for site in (copy.holding.site, *f.cancel_at) if site in sites]
        outcomes = {site: self._cancel_at_dc(sites[site], f.order_id) for site in holders}
        shipped = [site for site, o in outcomes.items() if o is CancelOutcome.SHIPPED]
        if shipped:
            return (
                f"duplicate of order {other}, already shipped by {', '.join(shipped)}: an operator decides",
                False,
            )
        return (
            f"duplicate of order {other} ({channel}/{external_id}): cancelled at {', '.join(holders)}",
            True,
        )

    @staticmethod
    def _owe_cancels(s: Session, row: OrderRow, cancel_at: Iterable[str], why: str, now: datetime) -> None:
        for site in cancel_at:
            repo.add_cancel(s, row.id, site, f"a second live copy {why}", now)
            _note(s, row.id, site, f"cancel queued: a second live copy {why}", now)


def _store_copy(record: StoreRecord, started: datetime) -> StoreCopy:
    in_lease = (
        record.status == OrderStatus.ROUTED.value
        and record.next_attempt_at is not None
        and record.next_attempt_at > started
    )
    return StoreCopy(
        OrderStatus(record.status),
        record.site,
        record.cancels_owed,
        settling=in_lease or record.updated_at >= started,
    )


def _request_from(copy: DcCopy, now: datetime, promise_hours: float) -> Any:
    body = {k: v for k, v in copy.payload.items() if k != "order_id"}
    return OrderIn.model_validate(body).to_request(now, promise_hours)


def _first_error(exc: ValidationError | InvalidInput) -> str:
    if isinstance(exc, InvalidInput):
        return str(exc)
    err = exc.errors(include_url=False)[0]
    return f"{'.'.join(str(p) for p in err['loc']) or '(body)'}: {err['msg']}"


def _with_stock(text: str, raised: dict[str, int]) -> str:
    if not raised:
        return text
    return f"{text}; stock count raised to cover it: " + ", ".join(
        f"{k} +{v}" for k, v in sorted(raised.items())
    )


def _note(s: Session, order_id: str, site: str | None, reason: str, now: datetime) -> None:
    repo.add_attempt(s, order_id, repo.Attempt(now, site, RECONCILED, reason))


def build_reconciler(ctx: AppContext) -> Reconciler:
    """The reconciler over a context's parts: the DC client reads the ledgers, a shipment is
    recorded as the DC's own event would be."""

    def record_shipment(site: str, order_id: str) -> tuple[str, bool]:
        event = DcEvent(site, order_id, DcEventKind.SHIPPED, ctx.clock(), via="reconcile")
        result = build_lifecycle(ctx).apply_event(event)
        ok = result.outcome in (EventOutcome.APPLIED, EventOutcome.DUPLICATE)
        return f"shipment by {site} recorded ({result.outcome.value}, now {result.status})", ok

    return Reconciler(
        ctx.sessions,
        lambda: [state.site for state in ctx.sites.snapshot()],
        ctx.client,
        ctx.client.cancel,
        record_shipment,
        ctx.clock,
        ctx.settings.default_promise_hours,
    )

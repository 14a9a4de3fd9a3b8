"""Order-level reconciliation: compare what drctl's store says about an order with what every DC's
ledger holds, and decide what would make them agree.

Pure: the caller reads the ledgers (the DC contract's `GET /orders` listing) and the store, hands
both in per order, and carries out the repair this module names. The rules, in one place:

- an order a DC holds and the store does not know (a database restore lost it) is re-imported
  from the DC's copy, at the DC that shipped it or else the one that received it last; its copies
  at other DCs are cancelled;
- an order the store has live at a DC that does not hold it is dispatched again;
- an order live at two DCs, with no cancel owed at the extra one, is cancelled there;
- an order the store has at one DC but only another DC holds is adopted where it is;
- a held or cancelled order a DC holds is adopted or cancelled there;
- a shipment the store has not heard of is recorded.

An order whose store copy changed after the ledgers were read, or whose dispatch is still within
its lease, is *settling*: the order path will settle it, so it is not a finding.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from control_plane.domain import OrderStatus, Site


class DcStatus(StrEnum):
    """An order's status in a DC's ledger (DESIGN §4)."""

    ACCEPTED = "accepted"
    SHIPPED = "shipped"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Holding:
    """One DC's copy of one order."""

    site: str
    dc_ref: str
    status: DcStatus
    received_at: datetime

    @property
    def live(self) -> bool:
        return self.status is not DcStatus.CANCELLED


@dataclass(frozen=True, slots=True)
class DcCopy:
    """An order as a DC's listing gives it: its copy, and the fields drctl posted it with."""

    order_id: str
    holding: Holding
    payload: dict[str, Any]


class LedgerReader(Protocol):
    """The DC contract's read side, as reconciliation uses it (the top layer hands in HTTP)."""

    def list_orders(self, site: Site, since: datetime | None) -> Iterator[DcCopy]:
        """Every order the DC holds (any status), received or re-taken at or after `since`."""
        ...

    def get_order(self, site: Site, order_id: str) -> DcCopy | None:
        """One order as the DC holds it; None when it never received it."""
        ...


@dataclass(frozen=True, slots=True)
class StoreCopy:
    """What the store says about one order."""

    status: OrderStatus
    site: str | None
    cancels_owed: frozenset[str] = frozenset()  # DCs a pending cancel of it will reach
    settling: bool = False


class Kind(StrEnum):
    UNKNOWN_TO_STORE = "unknown_to_store"
    MISSING_AT_DC = "missing_at_dc"
    AT_SEVERAL_DCS = "at_several_dcs"
    ELSEWHERE = "elsewhere"
    HELD_BUT_AT_DC = "held_but_at_dc"
    CANCELLED_BUT_AT_DC = "cancelled_but_at_dc"
    SHIPPED_NOT_RECORDED = "shipped_not_recorded"
    SHIPPED_MISSING_AT_DC = "shipped_missing_at_dc"


class Action(StrEnum):
    IMPORT = "import"  # create the order in the store from the keeper's copy
    REDISPATCH = "redispatch"  # post it again (the retry loop: same DC, or another if it stopped)
    ADOPT = "adopt"  # the store follows the keeper: site, reservation, status
    CANCEL = "cancel"  # cancel the copies in `cancel_at`, nothing else
    RECORD_SHIPMENT = "record_shipment"
    NONE = "none"  # nothing drctl can do safely: an operator decides


@dataclass(frozen=True, slots=True)
class Finding:
    order_id: str
    kind: Kind
    action: Action
    keep: Holding | None  # the copy the store should follow
    cancel_at: tuple[str, ...] = ()  # DCs whose live copy is cancelled
    detail: str = ""


@dataclass(frozen=True, slots=True)
class _Holders:
    live: list[Holding] = field(default_factory=list)

    @classmethod
    def of(cls, holdings: Sequence[Holding]) -> _Holders:
        return cls([h for h in holdings if h.live])

    def at(self, site: str | None) -> Holding | None:
        return next((h for h in self.live if h.site == site), None)

    def besides(self, site: str | None, owed: frozenset[str]) -> list[Holding]:
        """Live copies away from `site` that no pending cancel will reach."""
        return [h for h in self.live if h.site != site and h.site not in owed]


def keeper(copies: Sequence[Holding]) -> Holding:
    """The copy to keep: a shipped one (it cannot be undone), else the one received last (the
    order path moves forward: the latest post is where it was sent last)."""
    return max(copies, key=lambda h: (h.status is DcStatus.SHIPPED, h.received_at, h.site))


def _cancellable(copies: Sequence[Holding]) -> tuple[tuple[str, ...], str]:
    """The DCs whose copy can still be cancelled, and a note on those that shipped already."""
    shipped = sorted(h.site for h in copies if h.status is DcStatus.SHIPPED)
    cancel = tuple(sorted(h.site for h in copies if h.status is DcStatus.ACCEPTED))
    note = f"also shipped by {', '.join(shipped)}: an operator decides" if shipped else ""
    return cancel, note


def _cancel_or_none(cancel: tuple[str, ...]) -> Action:
    return Action.CANCEL if cancel else Action.NONE


def _several(order_id: str, here: Holding | None, extras: Sequence[Holding]) -> Finding:
    """Live at the store's DC (`here`) and at `extras` too: cancel the extras that can be."""
    cancel, note = _cancellable(extras)
    detail = note or f"also live at {', '.join(h.site for h in extras)}"
    return Finding(order_id, Kind.AT_SEVERAL_DCS, _cancel_or_none(cancel), here, cancel, detail)


def _adopt_or_import(order_id: str, kind: Kind, action: Action, copies: Sequence[Holding]) -> Finding:
    keep = keeper(copies)
    cancel, note = _cancellable([h for h in copies if h is not keep])
    detail = f"{keep.site} holds it ({keep.status.value}, {keep.dc_ref})"
    return Finding(order_id, kind, action, keep, cancel, "; ".join(filter(None, (detail, note))))


def compare(order_id: str, store: StoreCopy | None, holdings: Sequence[Holding]) -> Finding | None:
    """What is wrong with one order, and the repair; None when the store and the ledgers agree."""
    holders = _Holders.of(holdings)
    if store is None:
        if not holders.live:
            return None
        return _adopt_or_import(order_id, Kind.UNKNOWN_TO_STORE, Action.IMPORT, holders.live)
    if store.settling:
        return None
    extras = holders.besides(store.site, store.cancels_owed)
    if store.status in (OrderStatus.ROUTED, OrderStatus.ACCEPTED):
        return _compare_live(order_id, store, holders, extras)
    if store.status is OrderStatus.SHIPPED:
        here = holders.at(store.site)
        if extras:
            return _several(order_id, here, extras)
        if here is None:
            return Finding(
                order_id,
                Kind.SHIPPED_MISSING_AT_DC,
                Action.NONE,
                None,
                detail=f"recorded shipped by {store.site}, which does not hold it",
            )
        return None
    # cancelled, held, or received and never placed: no DC should hold a live copy
    extras = holders.besides(None, store.cancels_owed)
    if store.status is OrderStatus.CANCELLED:
        cancel, note = _cancellable(extras)
        if cancel:
            detail = note or "cancelled here, live at a DC"
            return Finding(order_id, Kind.CANCELLED_BUT_AT_DC, Action.CANCEL, None, cancel, detail)
        if extras:  # shipped after it was cancelled here: the lifecycle records that as a conflict
            sites = ", ".join(h.site for h in extras)
            detail = f"cancelled here, shipped by {sites}: an operator decides"
            return Finding(order_id, Kind.CANCELLED_BUT_AT_DC, Action.NONE, keeper(extras), (), detail)
        return None
    if extras:
        return _adopt_or_import(order_id, Kind.HELD_BUT_AT_DC, Action.ADOPT, extras)
    return None


def _compare_live(
    order_id: str, store: StoreCopy, holders: _Holders, extras: list[Holding]
) -> Finding | None:
    here = holders.at(store.site)
    if here is None:
        if extras:
            return _adopt_or_import(order_id, Kind.ELSEWHERE, Action.ADOPT, extras)
        return Finding(
            order_id,
            Kind.MISSING_AT_DC,
            Action.REDISPATCH,
            None,
            detail=f"{store.status.value} at {store.site}, which does not hold it",
        )
    if extras:
        if here.status is not DcStatus.SHIPPED and any(h.status is DcStatus.SHIPPED for h in extras):
            # another DC shipped it: that copy wins and this one is the extra
            return _adopt_or_import(order_id, Kind.AT_SEVERAL_DCS, Action.ADOPT, [here, *extras])
        several = _several(order_id, here, extras)
        if here.status is DcStatus.SHIPPED:  # record the shipment too, not only cancel the extras
            detail = f"shipped by {here.site}, not recorded; {several.detail}"
            return replace(several, action=Action.RECORD_SHIPMENT, detail=detail)
        return several
    if here.status is DcStatus.SHIPPED:
        return Finding(
            order_id,
            Kind.SHIPPED_NOT_RECORDED,
            Action.RECORD_SHIPMENT,
            here,
            detail=f"shipped by {here.site}, not recorded",
        )
    return None

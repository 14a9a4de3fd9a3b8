"""A DC's order book: idempotent intake, cancel, ship — the ground truth reconciliation reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class OrderStatus(StrEnum):
    ACCEPTED = "accepted"
    SHIPPED = "shipped"
    CANCELLED = "cancelled"


class UnknownOrder(LookupError):
    """The DC never received this order."""


class OrderConflict(RuntimeError):
    """The order's state forbids the change asked for."""


class OrderAlreadyShipped(OrderConflict):
    """The order left the building; it can no longer be cancelled."""


class OrderCancelled(OrderConflict):
    """The order was cancelled here; there is nothing to ship."""


@dataclass
class LedgerEntry:
    """What one DC knows about one order."""

    order_id: str
    dc_ref: str
    status: OrderStatus
    received_at: datetime
    posts: int
    payload: dict[str, Any]

    @property
    def active(self) -> bool:
        return self.status is not OrderStatus.CANCELLED


@dataclass
class Ledger:
    """Orders held by one DC, keyed by order_id; dc_refs are `<PREFIX>-<8-digit sequence>`."""

    ref_prefix: str
    _entries: dict[str, LedgerEntry] = field(default_factory=dict)
    # every entry in order of first receipt: the position is the listing's cursor (entries are never dropped)
    _received: list[LedgerEntry] = field(default_factory=list)
    _sequence: int = 0
    # Kept up to date on every transition so /health stays O(1) however many orders are held.
    _backlog: int = 0

    def accept(self, order_id: str, payload: dict[str, Any], now: datetime) -> tuple[LedgerEntry, bool]:
        """Take an order; return the entry and whether it became active just now (new or reactivated)."""
        entry = self._entries.get(order_id)
        if entry is None:
            self._sequence += 1
            entry = LedgerEntry(
                order_id=order_id,
                dc_ref=f"{self.ref_prefix}-{self._sequence:08d}",
                status=OrderStatus.ACCEPTED,
                received_at=now,
                posts=1,
                payload=payload,
            )
            self._entries[order_id] = entry
            self._received.append(entry)
            self._backlog += 1
            return entry, True
        entry.posts += 1
        if entry.status is OrderStatus.CANCELLED:
            # A failback sends the order here again: same dc_ref, fresh take.
            entry.status = OrderStatus.ACCEPTED
            entry.received_at = now
            entry.payload = payload
            self._backlog += 1
            return entry, True
        return entry, False

    def cancel(self, order_id: str) -> LedgerEntry:
        """Cancel an order that has not shipped; cancelling twice is fine."""
        entry = self.get(order_id)
        if entry.status is OrderStatus.SHIPPED:
            raise OrderAlreadyShipped(order_id)
        if entry.status is OrderStatus.ACCEPTED:
            entry.status = OrderStatus.CANCELLED
            self._backlog -= 1
        return entry

    def ship(self, order_id: str) -> LedgerEntry:
        """Mark an active order shipped, as the warehouse floor would."""
        entry = self.get(order_id)
        if entry.status is OrderStatus.CANCELLED:
            raise OrderCancelled(order_id)
        if entry.status is OrderStatus.ACCEPTED:
            entry.status = OrderStatus.SHIPPED
            self._backlog -= 1
        return entry

    def get(self, order_id: str) -> LedgerEntry:
        entry = self._entries.get(order_id)
        if entry is None:
            raise UnknownOrder(order_id)
        return entry

    def entries(self, include_cancelled: bool = False) -> list[LedgerEntry]:
        """Entries in order of first receipt; cancelled ones only when asked."""
        if include_cancelled:
            return list(self._entries.values())
        return [entry for entry in self._entries.values() if entry.active]

    def page(
        self, after: int, limit: int, since: datetime | None = None
    ) -> tuple[list[LedgerEntry], int | None]:
        """Up to `limit` entries past position `after` (received or re-taken at or after `since`, any
        status), and the cursor to ask with next (None at the end)."""
        picked: list[LedgerEntry] = []
        pos = after
        while pos < len(self._received) and len(picked) < limit:
            entry = self._received[pos]
            pos += 1
            if since is None or entry.received_at >= since:
                picked.append(entry)
        return picked, (pos if pos < len(self._received) else None)

    @property
    def backlog(self) -> int:
        """Orders accepted and not yet shipped."""
        return self._backlog

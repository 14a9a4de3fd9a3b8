"""Orders whose route changed in a way that may make them late, told to whoever writes notices.

The order path does not know about notices (that area sits above it); it hands each rerouted,
moved or held order to a `SlipSink` inside the transaction of the change, so a notice that the
change makes due commits with it (DESIGN §7, the transactional outbox) or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from sqlalchemy.orm import Session

from control_plane.store.tables import OrderRow


class SlipReason(StrEnum):
    REROUTED = "rerouted"  # its DC failed it and the next candidate took it
    MOVED = "moved"  # a failover moved it off its site
    HELD = "held"  # no DC can take it now


@dataclass(frozen=True, slots=True)
class Slip:
    order_id: str
    customer_id: str
    notify_via: str
    locale: str
    promised_by: datetime
    eta: datetime | None  # the new ETA; None while held
    cause_site: str | None  # the site it left, whose incident it belongs to
    reason: SlipReason

    @classmethod
    def of(cls, row: OrderRow, eta: datetime | None, cause_site: str | None, reason: SlipReason) -> Slip:
        return cls(
            row.id,
            row.customer_id,
            row.notify_via,
            row.customer_locale,
            row.promised_by,
            eta,
            cause_site,
            reason,
        )


class SlipSink(Protocol):
    def record(self, session: Session, slips: Sequence[Slip], now: datetime) -> None:
        """Write what `slips` make due, in the caller's transaction; never commit."""
        ...

    def shipped(self, session: Session, order: OrderRow, now: datetime) -> None:
        """The order shipped (in the caller's transaction): a follow-up may be due."""
        ...


class NoSlips:
    """For a control plane without notices: nothing is written."""

    def record(self, session: Session, slips: Sequence[Slip], now: datetime) -> None:
        return None

    def shipped(self, session: Session, order: OrderRow, now: datetime) -> None:
        return None

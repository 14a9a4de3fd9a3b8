"""Which orders owe their customer a notice, written in the transaction that made them late; and
what a notice would say (the preview).

`NoticeWriter` is the order path's `SlipSink`: a rerouted, moved or held order whose new ETA is
past its promise (or, held, whose promise is closer than the slack) gets a notice row unique per
(order, incident, kind), joined to its customer's unsent letter for that incident. Letters wait
`coalesce_s` for more late orders of the same customer, so one failover makes one message each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from control_plane.domain import NotFound, OrderStatus
from control_plane.notices import repository as repo
from control_plane.notices.letters import Cause, Letter, LetterOrder, NoticeKind, RenderedEmail, RenderedSms
from control_plane.notices.render import render_email, render_sms
from control_plane.orders.slips import Slip, SlipReason
from control_plane.store.tables import OrderRow
from failover.eta import is_late

MEDIA = ("email", "sms", "webhook")
CAUSE_OF_INCIDENT = {
    "site_outage": Cause.FULFILLMENT_CENTER,
    "integration_outage": Cause.DELIVERY_PARTNER,
    "capacity": Cause.HIGH_DEMAND,
    "drill": Cause.FULFILLMENT_CENTER,
}


@dataclass(frozen=True, slots=True)
class NoticePolicy:
    slack: timedelta  # a held order is late once its promise is closer than this
    coalesce_s: float
    timezone: str
    support_url: str
    follow_up: bool = False


def cause_of(incident_kind: str | None, cause_site: str | None) -> Cause:
    if incident_kind is not None:
        return CAUSE_OF_INCIDENT.get(incident_kind, Cause.FULFILLMENT_CENTER)
    return Cause.FULFILLMENT_CENTER if cause_site else Cause.HIGH_DEMAND


class NoticeWriter:
    """Writes the notices that order changes make due (the order path's `SlipSink`)."""

    def __init__(self, policy: NoticePolicy) -> None:
        self._policy = policy

    def record(self, session: Session, slips: Sequence[Slip], now: datetime) -> None:
        late = [s for s in slips if is_late(s.promised_by, s.eta, now, self._policy.slack)]
        if not late:
            return
        incidents = repo.open_incidents_for(session, [s.cause_site for s in late if s.cause_site])
        notices = []
        for s in late:
            incident = incidents.get(s.cause_site) if s.cause_site else None
            notices.append(
                repo.NewNotice(
                    order_id=s.order_id,
                    customer_id=s.customer_id,
                    incident_id=incident[0] if incident else None,
                    kind=NoticeKind.DELAY.value,
                    locale=s.locale,
                    channel=s.notify_via if s.notify_via in MEDIA else "email",
                    reason=_late_reason(s),
                    cause_site=s.cause_site,
                    promised_by=s.promised_by,
                    eta=s.eta,
                )
            )
        repo.add_notices(session, notices, now, now + timedelta(seconds=self._policy.coalesce_s))

    def shipped(self, session: Session, order: OrderRow, now: datetime) -> None:
        """A held order that was told of its delay shipped: tell them it is on its way (a setting)."""
        if not self._policy.follow_up:
            return
        told = repo.sent_held_notice(session, order.id)
        if told is None:
            return
        repo.add_notices(
            session,
            [
                repo.NewNotice(
                    order.id,
                    order.customer_id,
                    told.incident_id,
                    NoticeKind.BACK_ON_TRACK.value,
                    order.customer_locale,
                    told.channel,
                    "shipped after a delay",
                    told.cause_site,
                    order.promised_by,
                    order.shipped_at,
                )
            ],
            now,
            now,
        )

    def sweep_held(self, session: Session, now: datetime, limit: int = 500) -> int:
        """Held orders that came within the slack of their promise while held: late now."""
        rows = repo.held_orders_near_promise(session, now + self._policy.slack, limit)
        slips = [Slip.of(r, None, None, SlipReason.HELD) for r in rows]
        self.record(session, slips, now)
        return len(slips)


def _late_reason(s: Slip) -> str:
    if s.eta is None:
        return f"{s.reason.value}: no DC can take it before its promise"
    hours = (s.eta - s.promised_by).total_seconds() / 3600
    return f"{s.reason.value}: new ETA {hours:.1f} h past the promise"


@dataclass(frozen=True, slots=True)
class Preview:
    order_id: str
    channel: str
    locale: str
    late: bool
    email: RenderedEmail
    sms: RenderedSms


def letter_for(
    policy: NoticePolicy,
    kind: NoticeKind,
    name: str,
    locale: str,
    cause: Cause,
    orders: Sequence[LetterOrder],
) -> Letter:
    return Letter(
        kind=kind,
        customer_name=name,
        locale="en" if locale == "en" else "ko",
        timezone=policy.timezone,
        cause=cause,
        orders=tuple(orders),
        support_url=policy.support_url,
    )


def preview(session: Session, policy: NoticePolicy, order_id: str, now: datetime) -> Preview:
    """What this order's customer would receive about it now (rendered, nothing written or sent)."""
    order = repo.order_of(session, order_id)
    if order is None:
        raise NotFound(f"order {order_id!r} not found")
    told = repo.latest_cause(session, order.id)
    if told is not None:
        # the cause its notice was written with, as the sender will word it
        cause_site, kind = told
    else:
        cause_site = order.site
        incident = repo.open_incidents_for(session, [order.site]) if order.site else {}
        kind = incident[order.site][1] if order.site and order.site in incident else None
    eta = None if order.status == OrderStatus.HELD.value else order.eta
    letter = letter_for(
        policy,
        NoticeKind.DELAY,
        order.customer_name,
        order.customer_locale,
        cause_of(kind, cause_site),
        [LetterOrder(order.id, order.external_id, order.promised_by, eta)],
    )
    return Preview(
        order_id=order.id,
        channel=order.notify_via,
        locale=letter.locale,
        late=is_late(order.promised_by, eta, now, policy.slack),
        email=render_email(letter),
        sms=render_sms(letter),
    )

"""What a notice says and how it travels: plain data shared by rendering, channels and delivery."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal


class NoticeKind(StrEnum):
    DELAY = "delay"  # the order's promise slipped
    BACK_ON_TRACK = "back_on_track"  # a held order shipped after all (follow-up, off by default)


class Cause(StrEnum):
    """What the customer is told happened: plain words, never a site's internal code."""

    FULFILLMENT_CENTER = "fulfillment_center"  # a DC outage, failover or its breaker
    DELIVERY_PARTNER = "delivery_partner"  # a carrier or other integration outage
    HIGH_DEMAND = "high_demand"  # no site had the stock or capacity (held)


@dataclass(frozen=True, slots=True)
class LetterOrder:
    """One late order as the customer knows it."""

    order_id: str  # drctl's id
    order_number: str  # the channel's external id: what the customer sees on their receipt
    promised_by: datetime  # the old delivery date (UTC)
    new_eta: datetime | None  # the new one (UTC); None: not known yet (held)


@dataclass(frozen=True, slots=True)
class Letter:
    """One message to one customer about one incident, naming all of their late orders."""

    kind: NoticeKind
    customer_name: str
    locale: Literal["ko", "en"]
    timezone: str  # IANA name the dates are shown in, e.g. "Asia/Seoul"
    cause: Cause
    orders: tuple[LetterOrder, ...]
    support_url: str


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


@dataclass(frozen=True, slots=True)
class RenderedSms:
    text: str
    kind: Literal["sms", "lms"]  # Korean carriers: <= 90 bytes (EUC-KR) is a short SMS, longer an LMS
    size_bytes: int  # as counted for that rule


@dataclass(frozen=True, slots=True)
class Envelope:
    """What a channel sends: the rendered forms and where to. `key` is stable per message, so a
    receiver can tell a re-send of the same message (e-mail Message-ID, webhook idempotency key)."""

    key: str
    to: str  # e-mail address, E.164 phone number, or the customer id (webhook)
    email: RenderedEmail
    sms: RenderedSms
    data: dict[str, Any] = field(default_factory=dict)  # structured form (the webhook's JSON body)


@dataclass(frozen=True, slots=True)
class Sent:
    provider_id: str  # the provider's message id (SES/SNS MessageId, Message-ID header, ...)
    detail: str = ""  # e.g. "lms" when an SMS went as a long message

"""What the notices API answers: a notice with its letter, and a rendered preview."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class NoticeOut(BaseModel):
    id: int
    order_id: str
    incident_id: int | None
    kind: str
    channel: str  # the customer's choice: email | sms | webhook
    sent_via: str | None  # the channel it went by (differs on a fallback)
    locale: str
    status: str  # pending | sent | failed | suppressed
    reason: str  # why it was late, or why it was suppressed
    attempts: int
    provider_id: str | None
    detail: str | None  # sms | lms, or the fallback taken
    letter_id: int
    promised_by: datetime
    eta: datetime | None
    created_at: datetime
    sent_at: datetime | None


class EmailOut(BaseModel):
    subject: str
    text: str
    html: str


class SmsOut(BaseModel):
    text: str
    kind: str  # sms | lms
    size_bytes: int


class PreviewOut(BaseModel):
    order_id: str
    channel: str
    locale: str
    late: bool  # whether the order counts as late now
    email: EmailOut
    sms: SmsOut

"""Notices through AWS: e-mail with SES (API v2, the raw MIME message), SMS with SNS."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from control_plane.notices.channels.base import Medium, NoticeChannelError
from control_plane.notices.channels.mime import address_domain, notice_email, single_address
from control_plane.notices.contacts import to_e164
from control_plane.notices.letters import Envelope, Sent
from control_plane.store.aws import aws_client, aws_errors


class SesNoticeChannel:
    """Send the same MIME message as SMTP through SES `sesv2.send_email` (`Content.Raw`).

    The sender must be verified in SES. SES replaces the Message-ID with its own, so the notice's
    key also travels in the `X-Drctl-Notice-Key` header (see `mime`).
    """

    name = "ses"
    medium: Medium = "email"

    def __init__(
        self, sender: str, region: str, endpoint_url: str | None = None, timeout_s: float = 5.0
    ) -> None:
        address_domain(sender)  # refuse a sender without a domain now, not at the first send
        self._sender = sender
        self._client = aws_client("sesv2", region, endpoint_url, timeout_s)

    def send(self, envelope: Envelope) -> Sent:
        """Send once; return the SES MessageId."""
        to = single_address(envelope.to, self.name)
        raw = notice_email(envelope, self._sender, datetime.now(UTC)).as_bytes()
        with aws_errors(self.name, NoticeChannelError):
            reply = self._client.send_email(
                FromEmailAddress=self._sender,
                # named, not left to SES to read from the headers: only this one address receives it
                Destination={"ToAddresses": [to]},
                Content={"Raw": {"Data": raw}},
            )
        return Sent(provider_id=str(reply["MessageId"]))

    def close(self) -> None:
        """Close the client's connection pool."""
        self._client.close()


class SnsSmsChannel:
    """Send the SMS form of a notice as a transactional SMS through SNS `publish(PhoneNumber=...)`."""

    name = "sns"
    medium: Medium = "sms"

    def __init__(
        self,
        region: str,
        endpoint_url: str | None = None,
        timeout_s: float = 5.0,
        sender_id: str | None = None,
    ) -> None:
        # Transactional: SNS routes it for reliability rather than cost (a delay notice is about
        # the customer's own order, not marketing)
        self._attributes: dict[str, Any] = {
            "AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Transactional"}
        }
        if sender_id is not None:
            self._attributes["AWS.SNS.SMS.SenderID"] = {"DataType": "String", "StringValue": sender_id}
        self._client = aws_client("sns", region, endpoint_url, timeout_s)

    def send(self, envelope: Envelope) -> Sent:
        """Publish once to `envelope.to` (E.164 or a Korean national number); detail: "sms" or "lms"."""
        phone = to_e164(envelope.to)
        if phone is None:
            raise NoticeChannelError(f"{self.name}: the recipient is not a phone number")
        with aws_errors(self.name, NoticeChannelError):
            reply = self._client.publish(
                PhoneNumber=phone, Message=envelope.sms.text, MessageAttributes=self._attributes
            )
        return Sent(provider_id=str(reply["MessageId"]), detail=envelope.sms.kind)

    def close(self) -> None:
        """Close the client's connection pool."""
        self._client.close()

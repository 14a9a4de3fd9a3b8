"""What every notice channel is: one attempt to send one `Envelope`, or a `NoticeChannelError`."""

from __future__ import annotations

from typing import Literal, Protocol

from control_plane.notices.letters import Envelope, Sent

Medium = Literal["email", "sms", "webhook"]


class NoticeChannelError(Exception):
    """A send failed; the message is safe to log: never an address, a phone number, a secret URL or a
    password, only the channel's name and an error code or type."""


class NoticeChannel(Protocol):
    """Send a customer notice once, within the channel's timeout; the caller retries and queues."""

    name: str  # "smtp" | "ses" | "sns" | "webhook" | "log": the `channel` label of metrics and logs
    medium: Medium  # what `Envelope.to` must hold: an e-mail address, an E.164 number, a customer id

    def send(self, envelope: Envelope) -> Sent:
        """Send `envelope` once; return the provider's id for it, or raise `NoticeChannelError`."""
        ...

    def close(self) -> None:
        """Release connections and clients; the channel is not used afterwards."""
        ...

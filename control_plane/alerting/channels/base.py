"""What every alert channel is: one delivery attempt of one notification, or a `ChannelError`."""

from __future__ import annotations

from typing import Protocol

from control_plane.alerting.engine import Notification


class ChannelError(Exception):
    """A delivery attempt failed; the message is safe to log (no URL, password or token in it)."""


class AlertChannel(Protocol):
    """Deliver a notification once, within the channel's timeout; the caller retries and queues."""

    name: str  # "webhook" | "sns" | "ses" | "smtp": the `channel` label of metrics and logs

    def send(self, note: Notification) -> str:
        """Deliver `note` once and return the provider's id for it; raise `ChannelError` if not."""
        ...

    def close(self) -> None:
        """Release connections and clients; the channel is not used afterwards."""
        ...

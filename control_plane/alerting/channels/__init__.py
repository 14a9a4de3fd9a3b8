"""Delivery channels of the built-in alert engine: Slack-style webhook, Amazon SNS, Amazon SES, SMTP.

Each channel makes one attempt to deliver one `Notification` within a timeout and returns the
provider's id for it, or raises `ChannelError` with a message safe to log. Retries, circuit
breakers and the outbox belong to the caller. `message` holds the formatting all channels share.
"""

from control_plane.alerting.channels.aws import SesChannel, SnsChannel
from control_plane.alerting.channels.base import AlertChannel, ChannelError
from control_plane.alerting.channels.smtp import SmtpChannel
from control_plane.alerting.channels.webhook import WebhookChannel

__all__ = [
    "AlertChannel",
    "ChannelError",
    "SesChannel",
    "SmtpChannel",
    "SnsChannel",
    "WebhookChannel",
]

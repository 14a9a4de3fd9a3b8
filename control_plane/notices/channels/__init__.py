"""Channels that send customer notices: SMTP, SES, SNS (SMS), a signed webhook relay, a local log.

Each channel makes one attempt to send one `Envelope` within a timeout and returns a `Sent`, or
raises `NoticeChannelError` with a message safe to log. Retries, circuit breakers and the outbox
belong to the caller.
"""

from control_plane.notices.channels.aws import SesNoticeChannel, SnsSmsChannel
from control_plane.notices.channels.base import Medium, NoticeChannel, NoticeChannelError
from control_plane.notices.channels.log import LogNoticeChannel
from control_plane.notices.channels.smtp import SmtpNoticeChannel
from control_plane.notices.channels.webhook import WebhookNoticeChannel, verify_signature

__all__ = [
    "LogNoticeChannel",
    "Medium",
    "NoticeChannel",
    "NoticeChannelError",
    "SesNoticeChannel",
    "SmtpNoticeChannel",
    "SnsSmsChannel",
    "WebhookNoticeChannel",
    "verify_signature",
]

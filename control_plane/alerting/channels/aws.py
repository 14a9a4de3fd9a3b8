"""Amazon SNS (publish to a topic) and Amazon SES (send an email) channels, through boto3."""

from __future__ import annotations

from collections.abc import Sequence

from control_plane.alerting.channels import message
from control_plane.alerting.channels.base import ChannelError
from control_plane.alerting.engine import Notification
from control_plane.store.aws import aws_client, aws_errors

SNS_SUBJECT_MAX = 100  # SNS rejects longer subjects


class SnsChannel:
    """Publish to an SNS topic: `Subject` for email subscribers, the plain text as `Message`."""

    name = "sns"

    def __init__(
        self, topic_arn: str, region: str, endpoint_url: str | None = None, timeout_s: float = 5.0
    ) -> None:
        self._topic_arn = topic_arn
        self._client = aws_client("sns", region, endpoint_url, timeout_s)

    def send(self, note: Notification) -> str:
        """Publish once; return the SNS MessageId."""
        subject = _shorten(message.subject(note), SNS_SUBJECT_MAX)
        with aws_errors(self.name, ChannelError):
            reply = self._client.publish(
                TopicArn=self._topic_arn, Subject=subject, Message=message.text(note)
            )
        return str(reply["MessageId"])

    def close(self) -> None:
        """Close the client's connection pool."""
        self._client.close()


class SesChannel:
    """Send a plain-text email through SES (v1 `send_email`); the sender must be verified in SES."""

    name = "ses"

    def __init__(
        self,
        sender: str,
        recipients: Sequence[str],
        region: str,
        endpoint_url: str | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        if not recipients:
            raise ValueError("SesChannel needs at least one recipient")
        self._sender = sender
        self._recipients = list(recipients)
        self._client = aws_client("ses", region, endpoint_url, timeout_s)

    def send(self, note: Notification) -> str:
        """Send once; return the SES MessageId."""
        body = {
            "Subject": {"Data": message.subject(note), "Charset": "UTF-8"},
            "Body": {"Text": {"Data": message.text(note), "Charset": "UTF-8"}},
        }
        with aws_errors(self.name, ChannelError):
            reply = self._client.send_email(
                Source=self._sender, Destination={"ToAddresses": self._recipients}, Message=body
            )
        return str(reply["MessageId"])

    def close(self) -> None:
        """Close the client's connection pool."""
        self._client.close()


def _shorten(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."

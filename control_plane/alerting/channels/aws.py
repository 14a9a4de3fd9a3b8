"""Amazon SNS (publish to a topic) and Amazon SES (send an email) channels, through boto3."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from control_plane.alerting.channels import message
from control_plane.alerting.channels.base import ChannelError
from control_plane.alerting.engine import Notification

SNS_SUBJECT_MAX = 100  # SNS rejects longer subjects


class SnsChannel:
    """Publish to an SNS topic: `Subject` for email subscribers, the plain text as `Message`."""

    name = "sns"

    def __init__(
        self, topic_arn: str, region: str, endpoint_url: str | None = None, timeout_s: float = 5.0
    ) -> None:
        self._topic_arn = topic_arn
        self._client = _client("sns", region, endpoint_url, timeout_s)

    def send(self, note: Notification) -> str:
        """Publish once; return the SNS MessageId."""
        subject = _shorten(message.subject(note), SNS_SUBJECT_MAX)
        with _aws_errors(self.name):
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
        self._client = _client("ses", region, endpoint_url, timeout_s)

    def send(self, note: Notification) -> str:
        """Send once; return the SES MessageId."""
        body = {
            "Subject": {"Data": message.subject(note), "Charset": "UTF-8"},
            "Body": {"Text": {"Data": message.text(note), "Charset": "UTF-8"}},
        }
        with _aws_errors(self.name):
            reply = self._client.send_email(
                Source=self._sender, Destination={"ToAddresses": self._recipients}, Message=body
            )
        return str(reply["MessageId"])

    def close(self) -> None:
        """Close the client's connection pool."""
        self._client.close()


def _client(service: str, region: str, endpoint_url: str | None, timeout_s: float) -> Any:
    config = Config(
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
        # `total_max_attempts`, not `max_attempts`: botocore reads `max_attempts` as *retries*,
        # so max_attempts=1 would still make two attempts. The caller does the retrying.
        retries={"total_max_attempts": 1, "mode": "standard"},
    )
    # a session of our own: boto3's module-level default session is shared, mutable state
    session = boto3.session.Session(region_name=region)
    return session.client(service, endpoint_url=endpoint_url, config=config)


@contextmanager
def _aws_errors(channel: str) -> Iterator[None]:
    """Turn botocore errors into `ChannelError` carrying only the AWS error code or the error type."""
    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code") or "ClientError"
        raise ChannelError(f"{channel}: {code}") from None
    except BotoCoreError as exc:
        raise ChannelError(f"{channel}: {type(exc).__name__}") from None


def _shorten(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."

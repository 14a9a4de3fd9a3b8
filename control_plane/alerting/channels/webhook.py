"""POST a notification as Slack-compatible JSON to an incoming-webhook URL."""

from __future__ import annotations

import httpx

from control_plane.alerting.channels import message
from control_plane.alerting.channels.base import ChannelError
from control_plane.alerting.engine import Notification


class WebhookChannel:
    """Slack (or any JSON receiver) incoming webhook; the URL is a secret and never logged."""

    name = "webhook"

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self._url = url
        # trust_env=False: no proxy from the environment sees the secret URL; redirects are
        # not followed, so a 3xx counts as a failure
        self._client = httpx.Client(timeout=timeout_s, trust_env=False, follow_redirects=False)

    def send(self, note: Notification) -> str:
        """POST `message.slack_payload(note)`; return `HTTP <status>` on a 2xx answer."""
        try:
            response = self._client.post(self._url, json=message.slack_payload(note))
        except httpx.HTTPError as exc:
            # `from None`: httpx errors can carry the request (and so the URL) in their text
            raise ChannelError(f"webhook: {type(exc).__name__}") from None
        if not response.is_success:
            raise ChannelError(f"webhook: HTTP {response.status_code}")
        return f"HTTP {response.status_code}"

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

"""POST notices as signed JSON to a marketplace relay (e.g. one that sends KakaoTalk AlimTalk).

A timestamped HMAC, as webhook providers commonly sign: `X-Drctl-Timestamp` is the unix time in
seconds, `X-Drctl-Signature` is `sha256=` and the lowercase hex HMAC-SHA256 of
`"<timestamp>.<body>"` keyed with the shared secret (UTF-8), so a captured request cannot be
replayed later; `Idempotency-Key` is the envelope's key, so the relay can drop a re-send.
`verify_signature` is the receiving side.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from control_plane.notices.channels.base import Medium, NoticeChannelError
from control_plane.notices.letters import Envelope, Sent

TIMESTAMP_HEADER = "X-Drctl-Timestamp"
SIGNATURE_HEADER = "X-Drctl-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
_SCHEME = "sha256="


def _utcnow() -> datetime:
    return datetime.now(UTC)


class WebhookNoticeChannel:
    """The relay's URL may carry a token: it is never logged nor put in an error."""

    name = "webhook"
    medium: Medium = "webhook"

    def __init__(
        self, url: str, secret: str, timeout_s: float = 5.0, clock: Callable[[], datetime] = _utcnow
    ) -> None:
        if not secret:
            raise ValueError("WebhookNoticeChannel needs a signing secret")
        self._url, self._secret, self._clock = url, secret, clock
        # trust_env=False: no proxy from the environment sees the URL; a redirect is a failure
        self._client = httpx.Client(timeout=timeout_s, trust_env=False, follow_redirects=False)

    def send(self, envelope: Envelope) -> Sent:
        """POST once; return the relay's `id` if its JSON answer has one, else the idempotency key."""
        try:
            body = json.dumps(_payload(envelope), ensure_ascii=False, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            raise NoticeChannelError(f"webhook: data is not JSON ({type(exc).__name__})") from None
        timestamp = str(int(self._clock().timestamp()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
            IDEMPOTENCY_HEADER: envelope.key,
        }
        try:
            response = self._client.post(self._url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            # `from None`: httpx errors can carry the request (and so the URL) in their text
            raise NoticeChannelError(f"webhook: {type(exc).__name__}") from None
        if not response.is_success:
            raise NoticeChannelError(f"webhook: HTTP {response.status_code}")
        return Sent(provider_id=_relay_id(response) or envelope.key)

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The `X-Drctl-Signature` value: `sha256=` and the hex HMAC-SHA256 of `<timestamp>.<body>`."""
    signed = timestamp.encode("ascii") + b"." + body
    return _SCHEME + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str, timestamp: str, body: bytes, header: str | None, now: datetime, tolerance_s: float = 300
) -> bool:
    """Whether `header` signs `body` at `timestamp` under `secret`, and `timestamp` is within
    `tolerance_s` of `now` either way (a replayed old request fails). Compared in constant time."""
    if not header or not timestamp.isascii() or not timestamp.isdigit():
        return False
    if abs(now.timestamp() - int(timestamp)) > tolerance_s:
        return False
    try:
        given = header.strip().encode("ascii")
    except UnicodeEncodeError:  # no valid signature has a non-ASCII character
        return False
    return hmac.compare_digest(given, sign(secret, timestamp, body).encode("ascii"))


def _payload(envelope: Envelope) -> dict[str, Any]:
    return {
        "key": envelope.key,
        "to": envelope.to,
        "email": {
            "subject": envelope.email.subject,
            "text": envelope.email.text,
            "html": envelope.email.html,
        },
        "sms": {"text": envelope.sms.text, "kind": envelope.sms.kind},
        "data": envelope.data,
    }


def _relay_id(response: httpx.Response) -> str | None:
    try:
        answer = response.json()
    except ValueError:
        return None
    found = answer.get("id") if isinstance(answer, dict) else None
    return found if isinstance(found, str) and found else None

"""HMAC signatures of DC events (DESIGN §4): per-site secrets derived from one master secret.

A site's secret is never stored: it is `HMAC-SHA256(master, "dc-events:<code>")` in hex, so an
operator hands each DC its own secret (`drctl`'s master stays with drctl) and a leaked DC secret
signs events for that DC only. A request carries `X-Drctl-Signature: sha256=<hex>`, the lowercase
hex HMAC-SHA256 of the exact raw body keyed with the site's secret (its UTF-8 bytes).
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Drctl-Signature"
_SCHEME = "sha256="


def site_event_secret(master: str, code: str) -> str:
    """The secret one DC signs its events with, derived from drctl's master secret."""
    return hmac.new(master.encode(), f"dc-events:{code}".encode(), hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str) -> str:
    """The `X-Drctl-Signature` value for `body`: `sha256=` and the lowercase hex HMAC-SHA256."""
    return _SCHEME + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_matches(body: bytes, secret: str, header: str | None) -> bool:
    """Whether `header` is the signature of `body` under `secret`, compared in constant time."""
    if not header:
        return False
    try:
        given = header.strip().encode("ascii")
    except UnicodeEncodeError:  # no valid signature has a non-ASCII character
        return False
    return hmac.compare_digest(given, sign(body, secret).encode("ascii"))

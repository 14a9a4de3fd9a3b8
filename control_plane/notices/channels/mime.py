"""The e-mail form of a notice, the same over SMTP and SES: multipart/alternative with a stable
Message-ID derived from the envelope's key, so a receiver can recognise a re-send."""

from __future__ import annotations

import hashlib
import string
from datetime import datetime
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, parseaddr

from control_plane.notices.channels.base import NoticeChannelError
from control_plane.notices.letters import Envelope

KEY_HEADER = "X-Drctl-Notice-Key"  # the key again: SES replaces any Message-ID with its own
# a conservative part of RFC 5322 `atext`: some receivers mishandle the rarer characters
_MSGID_SAFE = frozenset(string.ascii_letters + string.digits + "-_+=")
_MSGID_KEY_MAX = 128


def notice_email(envelope: Envelope, sender: str, now: datetime) -> Message:
    """The message to send `envelope` from `sender` (`addr` or `Name <addr>`) to `envelope.to`.

    Built with the compat32 `email.mime` classes: a notice burst builds thousands of these, and
    they are about 5x cheaper than `EmailMessage` with a modern policy (0.4 ms against 2 ms per
    message, built and flattened, here); UTF-8 parts go as base64 either way, so 7-bit safe.
    """
    message = MIMEMultipart("alternative")
    # one line: a line break in a header value is refused (and would be header injection)
    message["Subject"] = Header(" ".join(envelope.email.subject.split()), "utf-8")
    message["From"] = sender
    message["To"] = envelope.to
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id(envelope.key, address_domain(sender))
    message[KEY_HEADER] = envelope.key
    message.attach(MIMEText(envelope.email.text, "plain", "utf-8"))
    message.attach(MIMEText(envelope.email.html, "html", "utf-8"))
    return message


def message_id(key: str, domain: str) -> str:
    """`<{key}@{domain}>` with the key made safe for a msg-id: other characters as `%XX` (UTF-8),
    `%` included, so distinct keys stay distinct; a very long key as its SHA-256."""
    safe = "".join(c if c in _MSGID_SAFE else "".join(f"%{b:02X}" for b in c.encode()) for c in key)
    if not safe or len(safe) > _MSGID_KEY_MAX:
        safe = "sha256-" + hashlib.sha256(key.encode()).hexdigest()
    return f"<{safe}@{domain}>"


def address_domain(sender: str) -> str:
    """The domain of the sender's address (`drctl@shop.test` -> `shop.test`)."""
    domain = parseaddr(sender)[1].rpartition("@")[2]
    if not domain:
        raise ValueError("the sender needs an address with a domain")
    return domain


def single_address(to: str, channel: str) -> str:
    """`to` if it is exactly one bare e-mail address (never a list: each notice has one reader)."""
    address = parseaddr(to)[1]
    if not address or address != to.strip() or address.count("@") != 1:
        raise NoticeChannelError(f"{channel}: the recipient is not one e-mail address")
    return address

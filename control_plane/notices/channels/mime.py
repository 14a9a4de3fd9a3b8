"""The e-mail form of a notice, the same over SMTP and SES: multipart/alternative with a stable
Message-ID derived from the envelope's key, so a receiver can recognise a re-send."""

from __future__ import annotations

import email.policy
import hashlib
import string
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from control_plane.notices.channels.base import NoticeChannelError
from control_plane.notices.letters import Envelope

KEY_HEADER = "X-Drctl-Notice-Key"  # the key again: SES replaces any Message-ID with its own
# 7bit: Korean text goes as base64/quoted-printable, so no relay needs 8BITMIME; CRLF line ends
POLICY = email.policy.SMTP.clone(cte_type="7bit")
# a conservative part of RFC 5322 `atext`: some receivers mishandle the rarer characters
_MSGID_SAFE = frozenset(string.ascii_letters + string.digits + "-_+=")
_MSGID_KEY_MAX = 128


def notice_email(envelope: Envelope, sender: str, now: datetime) -> EmailMessage:
    """The message to send `envelope` from `sender` (`addr` or `Name <addr>`) to `envelope.to`."""
    message = EmailMessage(policy=POLICY)
    # one line: a line break in a header value is refused (and would be header injection)
    message["Subject"] = " ".join(envelope.email.subject.split())
    message["From"] = sender
    message["To"] = envelope.to
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id(envelope.key, address_domain(sender))
    message[KEY_HEADER] = envelope.key
    message.set_content(envelope.email.text)
    message.add_alternative(envelope.email.html, subtype="html")
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

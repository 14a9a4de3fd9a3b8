"""Send a notification as a plain-text email over SMTP (optionally STARTTLS and AUTH)."""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from control_plane.alerting.channels import message
from control_plane.alerting.channels.base import ChannelError
from control_plane.alerting.engine import Notification


class SmtpChannel:
    """One SMTP connection per send (alerts are rare; a pooled connection would go stale)."""

    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        recipients: Sequence[str],
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout_s: float = 5.0,
    ) -> None:
        if not recipients:
            raise ValueError("SmtpChannel needs at least one recipient")
        self._host, self._port = host, port
        self._sender, self._recipients = sender, list(recipients)
        self._username, self._password = username, password
        self._starttls, self._timeout_s = starttls, timeout_s
        # both smtplib (EHLO) and make_msgid call socket.getfqdn() on every use unless told a
        # name: resolve it once here rather than on every send
        self._local_hostname = socket.getfqdn()
        self._msgid_domain = sender.rpartition("@")[2] or self._local_hostname

    def send(self, note: Notification) -> str:
        """Send once; return the Message-ID header of the email."""
        email = self._email(note)
        try:
            with smtplib.SMTP(
                self._host, self._port, local_hostname=self._local_hostname, timeout=self._timeout_s
            ) as smtp:
                if self._starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self._username is not None:
                    smtp.login(self._username, self._password or "")
                smtp.send_message(email, from_addr=self._sender, to_addrs=self._recipients)
        except smtplib.SMTPResponseException as exc:
            # the code only: the server's text may echo what we sent
            raise ChannelError(f"smtp: {type(exc).__name__} {exc.smtp_code}") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise ChannelError(f"smtp: {type(exc).__name__}") from None
        return str(email["Message-ID"])

    def close(self) -> None:
        """Nothing to release: each send opens and closes its own connection."""

    def _email(self, note: Notification) -> EmailMessage:
        email = EmailMessage()
        email["Subject"] = message.subject(note)
        email["From"] = self._sender
        email["To"] = ", ".join(self._recipients)
        email["Date"] = format_datetime(datetime.now(UTC))
        email["Message-ID"] = make_msgid(domain=self._msgid_domain)
        email["X-Drctl-Kind"] = str(note.kind)
        email["X-Drctl-Fingerprint"] = note.fingerprint
        email.set_content(message.text(note))
        return email

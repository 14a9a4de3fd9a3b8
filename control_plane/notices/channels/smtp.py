"""Send notices as e-mail over SMTP, keeping one connection open for a burst of sends."""

from __future__ import annotations

import smtplib
import socket
import ssl
import threading
from datetime import UTC, datetime
from email.message import Message
from email.policy import compat32
from email.utils import parseaddr

from control_plane.notices.channels.base import Medium, NoticeChannelError
from control_plane.notices.channels.mime import address_domain, notice_email, single_address
from control_plane.notices.letters import Envelope, Sent

_WIRE = compat32.clone(linesep="\r\n")  # SMTP wants CRLF line ends; sendmail() leaves bytes as they are
_SERVER_CLOSING = 421  # "service not available, closing transmission channel"


class SmtpNoticeChannel:
    """Notices come in bursts (one incident, many customers), so one connection serves every send.

    Sends go one at a time over it (a lock). A kept connection the server has closed meanwhile
    (idle timeout, restart, a 421) is replaced once, transparently; a fresh connection failing is
    the send's failure. So a send takes at most two connection attempts.
    """

    name = "smtp"
    medium: Medium = "email"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout_s: float = 5.0,
    ) -> None:
        self._host, self._port = host, port
        self._sender, self._envelope_from = sender, parseaddr(sender)[1]
        address_domain(sender)  # refuse a sender without a domain now, not at the first send
        self._username, self._password = username, password
        self._starttls, self._timeout_s = starttls, timeout_s
        # smtplib calls socket.getfqdn() for every EHLO unless told a name: resolve it once
        self._local_hostname = socket.getfqdn()
        self._lock = threading.Lock()
        self._smtp: smtplib.SMTP | None = None

    def send(self, envelope: Envelope) -> Sent:
        """Send once (on the kept connection if there is one); return the email's Message-ID."""
        to = single_address(envelope.to, self.name)
        message = notice_email(envelope, self._sender, datetime.now(UTC))
        try:
            with self._lock:
                self._deliver(message, to)
        except smtplib.SMTPResponseException as exc:
            # the code only: the server's text may echo the address
            raise NoticeChannelError(f"smtp: {type(exc).__name__} {exc.smtp_code}") from None
        except (smtplib.SMTPException, OSError) as exc:
            # SMTPRecipientsRefused carries the refused address: its type only
            raise NoticeChannelError(f"smtp: {type(exc).__name__}") from None
        return Sent(provider_id=str(message["Message-ID"]))

    def close(self) -> None:
        """QUIT the kept connection, if any."""
        with self._lock:
            smtp, self._smtp = self._smtp, None
            if smtp is None:
                return
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()

    def _deliver(self, message: Message, to: str) -> None:
        reused = self._smtp is not None
        try:
            self._send_on(self._connection(), message, to)
        except smtplib.SMTPException as exc:
            if not (reused and _server_went_away(exc)):
                raise
            self._send_on(self._connection(), message, to)

    def _send_on(self, smtp: smtplib.SMTP, message: Message, to: str) -> None:
        try:
            # flattened once here: send_message would run the generator again on every call
            smtp.sendmail(self._envelope_from, [to], message.as_bytes(policy=_WIRE))
        except (smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused):
            # smtplib has reset the transaction (the connection serves the next send) or, on a
            # 421, closed the socket
            if smtp.sock is None:
                self._smtp = None
            raise
        except BaseException:
            # the conversation broke off somewhere unknown: never reuse it
            self._smtp = None
            smtp.close()
            raise

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is not None:
            return self._smtp
        smtp = smtplib.SMTP(
            self._host, self._port, local_hostname=self._local_hostname, timeout=self._timeout_s
        )
        try:
            if self._starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self._username is not None:
                smtp.login(self._username, self._password or "")
        except BaseException:
            smtp.close()
            raise
        self._smtp = smtp
        return smtp


def _server_went_away(exc: smtplib.SMTPException) -> bool:
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return True
    if isinstance(exc, smtplib.SMTPResponseException):
        return exc.smtp_code == _SERVER_CLOSING
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return any(code == _SERVER_CLOSING for code, _ in exc.recipients.values())
    return False

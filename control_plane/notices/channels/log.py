"""The embedded default channel: one JSON line per notice in a local file, contacts masked."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from control_plane.notices.channels.base import Medium, NoticeChannelError
from control_plane.notices.contacts import mask_contact
from control_plane.notices.letters import Envelope, Sent


def _utcnow() -> datetime:
    return datetime.now(UTC)


class LogNoticeChannel:
    """Append `{"at", "key", "to" (masked), "subject", "sms_kind"}` to `path`; takes any Envelope.

    `medium` only says which address the deployment hands it (default "email"). The file is opened
    for each send, so rotating it away needs no restart.
    """

    name = "log"

    def __init__(self, path: Path, medium: Medium = "email", clock: Callable[[], datetime] = _utcnow) -> None:
        self.medium: Medium = medium
        self._path, self._clock = path, clock
        self._lock = threading.Lock()  # one whole line per send, even from many threads

    def send(self, envelope: Envelope) -> Sent:
        """Append one line; return `log:<key>`."""
        line = {
            "at": self._clock().astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "key": envelope.key,
            "to": mask_contact(envelope.to),
            "subject": envelope.email.subject,
            "sms_kind": envelope.sms.kind,
        }
        text = json.dumps(line, ensure_ascii=False) + "\n"
        try:
            with self._lock, self._path.open("a", encoding="utf-8") as out:
                out.write(text)
        except OSError as exc:
            # the type only: the error's text names the path
            raise NoticeChannelError(f"log: {type(exc).__name__}") from None
        return Sent(provider_id=f"log:{envelope.key}")

    def close(self) -> None:
        """Nothing to release: each send opens and closes the file."""

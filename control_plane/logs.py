"""Structured (JSON) logs on stderr; tokens never reach a log line."""

from __future__ import annotations

import logging
import re
import sys

from pythonjsonlogger.json import JsonFormatter

_TOKEN = re.compile(r"(drctl_)[A-Za-z0-9_-]{8,}|(?i:(bearer)\s+)[A-Za-z0-9._~+/=-]{8,}")


class RedactTokens(logging.Filter):
    """Mask anything shaped like a drctl token or a bearer credential, wherever it appears."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if _TOKEN.search(msg):
            record.msg = _TOKEN.sub(lambda m: (m.group(1) or m.group(2) + " ") + "***", msg)
            record.args = ()
        return True


def configure_logging(level: str = "INFO", json: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json:
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s", rename_fields={"levelname": "level"}
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactTokens())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

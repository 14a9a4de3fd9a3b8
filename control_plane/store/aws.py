"""boto3 plumbing every AWS channel shares: a client that makes one attempt within a timeout, and
botocore errors turned into messages that are safe to log."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError


def aws_client(service: str, region: str, endpoint_url: str | None, timeout_s: float) -> Any:
    """A boto3 client of `service` that tries once and waits at most `timeout_s` to connect or read."""
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
def aws_errors(label: str, error: Callable[[str], Exception]) -> Iterator[None]:
    """Re-raise botocore errors as `error("<label>: <AWS error code or error type>")`.

    Only the code or type: AWS messages and botocore's texts can echo an address, a phone number
    or the endpoint URL. `from None` keeps the original (and its text) out of logged tracebacks.
    """
    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code") or "ClientError"
        raise error(f"{label}: {code}") from None
    except BotoCoreError as exc:
        raise error(f"{label}: {type(exc).__name__}") from None

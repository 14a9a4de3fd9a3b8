"""What a DC tells drctl about its orders (DESIGN §4): signed `shipped` and `cancelled_by_dc` webhooks.

Each DC has one outbox: a bounded queue drained by one background task, so taking, shipping and
cancelling orders never wait on the control plane. An event is tried a bounded number of times with
backoff; a 2xx ends it, a 4xx other than 429 gives it up at once. While the DC is `down` or
`partition`ed its events are held, as those of a DC whose network is cut, and go out once the fault
is cleared. The secret signs bodies and is never logged or returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from chaos.simulator.faults import FieldError

EVENTS_PATH = "/v1/sites/{code}/events"
SIGNATURE_HEADER = "X-Drctl-Signature"
MASKED = "********"

EventKind = Literal["shipped", "cancelled_by_dc"]

MAX_QUEUE = 10_000
MAX_ATTEMPTS = 5
ATTEMPT_TIMEOUT_S = 2.0
FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 2.0

_log = logging.getLogger(__name__)


class EventsConfig(BaseModel):
    """Where a DC sends its events (`url` is drctl's base URL; None turns them off) and when it ships."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: StrictStr | None = Field(default=None, max_length=2000)
    secret: StrictStr = Field(default="", max_length=4096, repr=False, validate_default=True)
    # Ship every accepted order this long after it was taken; None ships only when told to.
    ship_after_s: StrictFloat | None = Field(default=None, ge=0, le=86_400, allow_inf_nan=False)

    @field_validator("url")
    @classmethod
    def _base_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ValueError(f"not a URL: {exc}") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parsed.userinfo or parsed.query or parsed.fragment:
            raise ValueError("must be a base URL, without credentials, query or fragment")
        return url.rstrip("/")

    @field_validator("secret")
    @classmethod
    def _secret_to_sign_with(cls, secret: str, info: ValidationInfo) -> str:
        if info.data.get("url") is not None and not secret:
            raise ValueError("required when url is set: every event is signed with it")
        return secret

    def events_url(self, code: str) -> str:
        assert self.url is not None
        return self.url + EVENTS_PATH.format(code=code)


class EventsView(BaseModel):
    """An events configuration as shown: the secret masked."""

    url: str | None
    secret: str | None
    ship_after_s: float | None

    @classmethod
    def of(cls, config: EventsConfig) -> EventsView:
        return cls(url=config.url, secret=MASKED if config.secret else None, ship_after_s=config.ship_after_s)


class InvalidEvents(ValueError):
    """Raised when an events body does not describe a configuration; one error per bad field."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


def parse_events(body: Any) -> EventsConfig:
    """Turn a decoded JSON body into an events configuration, naming every bad or unknown field."""
    if not isinstance(body, dict):
        raise InvalidEvents([FieldError(field="body", message="must be a JSON object")])
    try:
        return EventsConfig.model_validate(body)
    except ValidationError as exc:
        # Only locations and messages: pydantic's `input` would echo a secret given in the wrong place.
        raise InvalidEvents(
            [
                FieldError(field=".".join(str(part) for part in err["loc"]) or "body", message=err["msg"])
                for err in exc.errors()
            ]
        ) from None


def sign(body: bytes, secret: str) -> str:
    """The `X-Drctl-Signature` value: `sha256=` and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class DcEvent:
    """One event as it goes on the wire; the body is fixed when it happens, so every retry is identical."""

    order_id: str
    kind: EventKind
    body: bytes

    @classmethod
    def of(cls, order_id: str, kind: EventKind, at: datetime) -> DcEvent:
        fields = {"order_id": order_id, "event": kind, "at": at.isoformat(timespec="milliseconds")}
        return cls(order_id, kind, json.dumps(fields, separators=(",", ":")).encode())


class EventStats(BaseModel):
    """Events since the last reset: delivered, given up, dropped (queue full or turned off), pending."""

    sent: int
    failed: int
    dropped: int
    pending: int
    attempts: int
    held: bool


@dataclass
class _Run:
    """One generation of an outbox's queue and counters; a reset starts a new one."""

    queue: asyncio.Queue[DcEvent]
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    pending: int = 0
    attempts: int = 0


# `held()` answers None when events may go out, else an asyncio.Event set at the next fault change.
HeldCheck = Callable[[], asyncio.Event | None]


class EventOutbox:
    """A DC's outgoing events: queued by `emit`, delivered in order by one background task."""

    def __init__(
        self,
        code: str,
        config: Callable[[], EventsConfig],
        held: HeldCheck,
        *,
        max_queue: int = MAX_QUEUE,
        max_attempts: int = MAX_ATTEMPTS,
        attempt_timeout_s: float = ATTEMPT_TIMEOUT_S,
        first_backoff_s: float = FIRST_BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
    ) -> None:
        self.code = code
        self._config = config
        self._held = held
        self._max_queue = max_queue
        self._max_attempts = max_attempts
        self._attempt_timeout_s = attempt_timeout_s
        self._first_backoff_s = first_backoff_s
        self._max_backoff_s = max_backoff_s
        self._run = _Run(asyncio.Queue(max_queue))
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    def start(self) -> None:
        if self._client is None:
            # trust_env=False: no proxy from the environment; events go only to the configured URL.
            self._client = httpx.AsyncClient(
                timeout=self._attempt_timeout_s, trust_env=False, follow_redirects=False
            )
            self._task = asyncio.create_task(self._drain(self._run), name=f"events-{self.code}")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def emit(self, order_id: str, kind: EventKind, at: datetime) -> None:
        """Queue an event if events are on; never waits (a full queue drops the event and counts it)."""
        if self._config().url is None:
            return
        run = self._run
        try:
            run.queue.put_nowait(DcEvent.of(order_id, kind, at))
        except asyncio.QueueFull:
            run.dropped += 1
            return
        run.pending += 1

    def reset(self) -> None:
        """Forget every queued event and counter; an attempt in flight is abandoned."""
        if self._task is not None:
            self._task.cancel()
        self._run = _Run(asyncio.Queue(self._max_queue))
        if self._client is not None:
            self._task = asyncio.create_task(self._drain(self._run), name=f"events-{self.code}")

    def stats(self) -> EventStats:
        run = self._run
        return EventStats(
            sent=run.sent,
            failed=run.failed,
            dropped=run.dropped,
            pending=run.pending,
            attempts=run.attempts,
            held=self._held() is not None,
        )

    async def _drain(self, run: _Run) -> None:
        while True:
            event = await run.queue.get()
            try:
                await self._deliver(run, event)
            except Exception as exc:  # a bug must not stop every later event of this DC
                run.failed += 1
                _log.error("%s: %s for %s not delivered: %r", self.code, event.kind, event.order_id, exc)
            finally:
                run.pending -= 1

    async def _deliver(self, run: _Run, event: DcEvent) -> None:
        last = "no attempt"
        for attempt in range(1, self._max_attempts + 1):
            await self._until_released()
            config = self._config()
            if config.url is None:  # turned off while the event waited
                run.dropped += 1
                return
            run.attempts += 1
            status, last = await self._post(config, event)
            if status is not None and 200 <= status < 300:
                run.sent += 1
                return
            if status is not None and 400 <= status < 500 and status != 429:
                break  # the control plane refuses this event; sending it again changes nothing
            if attempt < self._max_attempts:
                await asyncio.sleep(min(self._max_backoff_s, self._first_backoff_s * 2 ** (attempt - 1)))
        run.failed += 1
        _log.warning(
            "%s: event %s for %s given up after %d attempt(s): %s",
            self.code,
            event.kind,
            event.order_id,
            attempt,
            last,
        )

    async def _until_released(self) -> None:
        # Each pass waits for one fault change, so this ends when the cutting fault is cleared.
        while (released := self._held()) is not None:
            await released.wait()

    async def _post(self, config: EventsConfig, event: DcEvent) -> tuple[int | None, str]:
        assert self._client is not None
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(event.body, config.secret)}
        try:
            # httpx's timeout bounds each phase; this bounds the whole attempt (a trickling answer too).
            async with asyncio.timeout(self._attempt_timeout_s):
                response = await self._client.post(
                    config.events_url(self.code), content=event.body, headers=headers
                )
        except (httpx.HTTPError, TimeoutError) as exc:
            return None, type(exc).__name__
        return response.status_code, f"HTTP {response.status_code}"

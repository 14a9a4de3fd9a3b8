"""Deliver notice letters through the shared outbox worker: read, suppress, render, send, record.

Every replica runs it (claims are SKIP LOCKED with a lease). At send time each order of a letter
is looked at again: one that shipped, was cancelled or is no longer late is `suppressed` with the
reason, and a letter with nothing left is not sent. The customer's `notify_via` picks the channel;
when that channel's breaker is open or the send fails and the customer has another contact, the
letter goes by the other one (e-mail <-> SMS) and says so. Each channel has its own breaker
(`notice:<name>`) and rate limit; a rate-limited letter waits without spending an attempt.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from control_plane.domain import OrderStatus
from control_plane.metrics import Metrics
from control_plane.notices import repository as repo
from control_plane.notices.channels import NoticeChannel, NoticeChannelError
from control_plane.notices.contacts import mask_email, mask_phone, to_e164
from control_plane.notices.letters import Envelope, LetterOrder, NoticeKind
from control_plane.notices.render import render_email, render_sms
from control_plane.notices.service import NoticePolicy, cause_of, letter_for
from control_plane.store.db import autocommit_connection, engine_of
from control_plane.store.outbox import (
    Finished,
    Item,
    Later,
    OutboxError,
    OutboxPolicy,
    OutboxTable,
    OutboxWorker,
)
from control_plane.store.tables import NoticeLetterRow
from failover.breakers import BreakerBoard, BreakerOpen
from failover.eta import is_late
from failover.rate import RateLimiter

log = logging.getLogger("drctl.notices")

LETTERS: OutboxTable[int] = OutboxTable(
    row=NoticeLetterRow,
    lane="channel",
    done_at="sent_at",
    payload=lambda row: int(row.id),
    breaker_name=None,  # the sender picks the channel (and its breaker) per letter
    provider_id="provider_id",
    done_at_statuses=frozenset({"sent"}),
)
FALLBACKS: Mapping[str, tuple[str, ...]] = {"email": ("sms",), "sms": ("email",), "webhook": ("email", "sms")}


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    timeout_s: float = 5.0
    max_attempts: int = 8
    backoff_base_s: float = 2.0
    backoff_max_s: float = 300.0
    batch: int = 20
    parallelism: int = 4  # letters of a batch in flight at once (a channel may still send one at a time)
    rate_per_s: Mapping[str, float] | None = None  # per channel name; default `default_rate_per_s`
    default_rate_per_s: float = 50.0


def suppression(line: repo.LetterLine, now: datetime, slack: timedelta, kind: str) -> str | None:
    """Why this order's notice should not go out now, or None when it should."""
    if kind == NoticeKind.BACK_ON_TRACK.value:
        return None
    if line.status == OrderStatus.SHIPPED.value:
        return "shipped before the notice was sent"
    if line.status == OrderStatus.CANCELLED.value:
        return "cancelled before the notice was sent"
    eta = line.eta if line.status != OrderStatus.HELD.value else None
    if not is_late(line.promised_by, eta, now, slack):
        return "no longer late"
    return None


class LetterSender:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        channels: Mapping[str, NoticeChannel],
        board: BreakerBoard,
        metrics: Metrics,
        policy: NoticePolicy,
        config: DeliveryConfig,
        clock: Callable[[], datetime],
    ) -> None:
        # the send path runs on Core connections: a Session's setup and teardown per letter cost
        # more CPU than its two statements
        self._engine: Engine = engine_of(sessions)
        self._channels = channels  # by medium: email, sms, webhook
        self._board = board
        self._metrics = metrics
        self._policy = policy
        self._cfg = config
        self._clock = clock
        self._limiter = RateLimiter(self._rate_value, clock=lambda: clock().timestamp())
        self._sent: dict[int, dict[str, int]] = {}  # per incident and medium, since the last drain
        self._sent_lock = threading.Lock()  # a batch's letters are sent from several threads

    @contextmanager
    def _pg(self) -> Iterator[Any]:
        """A cursor in autocommit mode on PostgreSQL (the send path's hot loop); else None."""
        if self._engine.dialect.name != "postgresql":
            yield None
            return
        with autocommit_connection(self._engine) as conn, conn.cursor() as cur:
            yield cur

    def _letter(self, letter_id: int) -> repo.LetterToSend | None:
        # one letter by its key, as the send is about to happen: a batch's letters read together
        # went by a plan that scanned the new notices per batch (no statistics yet in a burst)
        with self._pg() as cur:
            if cur is not None:
                return repo.letter_to_send_pg(cur, letter_id)
            with self._engine.connect() as conn:
                return repo.letter_to_send(conn, letter_id)

    def drain_sent(self) -> dict[int, dict[str, int]]:
        with self._sent_lock:
            sent, self._sent = self._sent, {}
        return sent

    def send(self, item: Item[int]) -> Finished | Later:
        """Send one letter and record it in the same transaction as its notices' new status."""
        now = self._clock()
        letter = self._letter(item.payload)
        if letter is None:
            return Finished("suppressed", "nothing left to tell")
        due: list[repo.LetterLine] = []
        quiet: list[tuple[int, str]] = []
        for line in letter.lines:
            why = suppression(line, now, self._policy.slack, letter.kind)
            if why:
                quiet.append((line.notice_id, why))
            else:
                due.append(line)
        if not due:
            self._finish(letter, due, quiet, None, item.attempts, now)
            return Finished("suppressed", quiet[0][1], recorded=True)
        first = due[0]
        cause_site = next((ln.cause_site for ln in due if ln.cause_site), None)
        text = letter_for(
            self._policy, NoticeKind(letter.kind), first.customer_name, first.locale,
            cause_of(letter.incident_kind, cause_site),
            [LetterOrder(ln.order_id, ln.order_number, ln.promised_by,
                         ln.eta if ln.status != OrderStatus.HELD.value else None) for ln in due],
        )  # fmt: skip
        # one key per message: the notice ids it names are sent once, so a receiver that sees the
        # key again is seeing a re-send of the same message
        envelope = Envelope(
            key=f"drctl-notice-{due[0].notice_id}-{len(due)}",
            to="",
            email=render_email(text),
            sms=render_sms(text),
            data={"customer_id": letter.customer_id, "kind": letter.kind,
                  "orders": [ln.order_number for ln in due]},
        )  # fmt: skip
        errors: list[str] = []
        for medium in (letter.channel, *FALLBACKS.get(letter.channel, ())):
            to = _address(medium, first, letter.customer_id)
            channel = self._channels.get(medium)
            if to is None or channel is None:
                continue
            # the allowance before the breaker: an admission not followed by a call would leave a
            # half-open breaker's one trial call hanging, or close it on no evidence
            wait_s = self._limiter.try_acquire(channel.name)
            if wait_s:
                return Later(now + timedelta(seconds=wait_s))
            breaker = self._board.get(f"notice:{channel.name}")
            try:
                admission = breaker.admit()
            except BreakerOpen:
                errors.append(f"{channel.name}: breaker open")
                continue
            try:
                sent = channel.send(replace(envelope, to=to))
            except NoticeChannelError as exc:
                breaker.record_failure(admission, exc)
                errors.append(str(exc))
                continue
            breaker.record_success(admission)
            detail = sent.detail
            if medium != letter.channel:
                reasons = "; ".join(errors) or "no contact"
                detail = "; ".join(p for p in (f"fallback from {letter.channel}: {reasons}", detail) if p)
            delivered = repo.Delivered(medium, channel.name, sent.provider_id, detail)
            ended = self._finish(letter, due, quiet, delivered, item.attempts, now)
            log.info("notice letter %s sent via %s to %s (%d orders)", letter.letter_id, channel.name,
                     _masked(medium, to), len(due))  # fmt: skip
            if not ended:
                return Later(now)  # orders joined it meanwhile: they go out next, on their own
            return Finished("sent", detail or None, sent.provider_id, recorded=True)
        raise OutboxError("; ".join(errors) or "no channel can reach the customer")

    def _rate_value(self, name: str) -> float:
        rates = self._cfg.rate_per_s or {}
        return max(0.1, rates.get(name, self._cfg.default_rate_per_s))

    def _finish(
        self,
        letter: repo.LetterToSend,
        due: list[repo.LetterLine],
        quiet: list[tuple[int, str]],
        delivered: repo.Delivered | None,
        attempts: int,
        now: datetime,
    ) -> bool:
        sent_ids = [ln.notice_id for ln in due] if delivered is not None else []
        outcome = repo.LetterOutcome(letter, sent_ids, quiet, delivered, attempts + 1, now)
        with self._pg() as cur:
            if cur is not None:
                ended = repo.finish_letter_pg(cur, outcome)
            else:
                with self._engine.begin() as conn:
                    ended = repo.finish_letter(conn, outcome)
        medium_of = {ln.notice_id: ln.notify_via for ln in letter.lines}
        for notice_id, _ in quiet:
            self._metrics.notices_total.labels(_medium_label(medium_of[notice_id]), "suppressed").inc()
        if delivered is not None:
            self._metrics.notices_total.labels(delivered.channel, "sent").inc(len(sent_ids))
            if letter.incident_id is not None:
                with self._sent_lock:
                    per = self._sent.setdefault(letter.incident_id, {})
                    per[delivered.channel] = per.get(delivered.channel, 0) + len(sent_ids)
        return ended


class NoticeDelivery:
    """The notices outbox on the shared worker; `deliver_due` runs one batch."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        channels: Mapping[str, NoticeChannel],
        board: BreakerBoard,
        metrics: Metrics,
        policy: NoticePolicy,
        config: DeliveryConfig,
        clock: Callable[[], datetime],
    ) -> None:
        self._sessions = sessions
        self._channels = channels
        self._metrics = metrics
        self._clock = clock
        self._sender = LetterSender(sessions, channels, board, metrics, policy, config, clock)
        self._worker: OutboxWorker[int] = OutboxWorker(
            "notices",
            sessions,
            LETTERS,
            self._sender,
            board,
            OutboxPolicy(
                # a send may take a timeout per step, and a fallback a second channel's
                lease_s=config.batch * config.timeout_s * 2 + 5,
                batch=config.batch,
                max_attempts=config.max_attempts,
                backoff_base_s=config.backoff_base_s,
                backoff_max_s=config.backoff_max_s,
            ),
            clock,
            self._counted,
            parallelism=config.parallelism,
        )

    def deliver_due(self, leading: Callable[[], bool] = lambda: True) -> int:
        """Send one batch of due letters; return how many ended (sent or suppressed)."""
        try:
            return self._worker.run_once(None, leading)
        finally:
            sent = self._sender.drain_sent()
            if sent:
                with self._sessions.begin() as s:
                    repo.note_on_timelines(s, sent, self._clock())

    def _counted(self, item: Item[int], status: str) -> None:
        if status not in ("retry", "failed"):
            return  # sent and suppressed are counted per notice by the sender
        now = self._clock()
        with self._sessions.begin() as s:
            if status == "failed":
                n = repo.fail_letter_notices(s, item.payload, item.attempts + 1, now)
            else:
                n = repo.pending_count(s, item.payload)
        self._metrics.notices_total.labels(_medium_label(item.lane), status).inc(n)
        log.warning("notice letter %s over %s: %s", item.payload, item.lane, status)

    def close(self) -> None:
        self._worker.close()
        for channel in {id(c): c for c in self._channels.values()}.values():
            try:
                channel.close()
            except Exception:
                log.exception("closing notice channel %s failed", channel.name)


def _address(medium: str, line: repo.LetterLine, customer_id: str) -> str | None:
    if medium == "email":
        return line.email or None
    if medium == "sms":
        return to_e164(line.phone) if line.phone else None
    return customer_id  # the marketplace relay knows its buyer by the customer id


def _masked(medium: str, to: str) -> str:
    return mask_email(to) if medium == "email" else mask_phone(to) if medium == "sms" else "customer"


def _medium_label(value: str) -> str:
    return value if value in ("email", "sms", "webhook") else "email"

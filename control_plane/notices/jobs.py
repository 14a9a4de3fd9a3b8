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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy.orm import Session, sessionmaker

from control_plane.domain import OrderStatus
from control_plane.metrics import Metrics
from control_plane.notices import repository as repo
from control_plane.notices.channels import NoticeChannel, NoticeChannelError
from control_plane.notices.contacts import mask_email, mask_phone, to_e164
from control_plane.notices.letters import Envelope, LetterOrder, NoticeKind
from control_plane.notices.render import render_email, render_sms
from control_plane.notices.service import NoticePolicy, cause_of, letter_for
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
        self._sessions = sessions
        self._channels = channels  # by medium: email, sms, webhook
        self._board = board
        self._metrics = metrics
        self._policy = policy
        self._cfg = config
        self._clock = clock
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def send(self, item: Item[int]) -> Finished | Later:
        now = self._clock()
        with self._sessions() as s:
            letter = repo.letter(s, item.payload)
            lines = repo.letter_lines(s, item.payload)
            incident_kind = repo.open_incident_kind(s, letter.incident_id) if letter else None
        if letter is None or not lines:
            return Finished("suppressed", "nothing left to tell")
        due, quiet = [], []
        for line in lines:
            why = suppression(line, now, self._policy.slack, letter.kind)
            (quiet if why else due).append((line, why))
        if not due:
            self._finish(letter.id, [], quiet, None, now, item.attempts)
            return Finished("suppressed", quiet[0][1])
        first = due[0][0]
        kind = NoticeKind(letter.kind)
        cause_site = next((ln.cause_site for ln, _ in due if ln.cause_site), None)
        text = letter_for(
            self._policy,
            kind,
            first.customer_name,
            first.locale,
            cause_of(incident_kind, cause_site),
            [
                LetterOrder(
                    ln.order_id,
                    ln.order_number,
                    ln.promised_by,
                    ln.eta if ln.status != OrderStatus.HELD.value else None,
                )
                for ln, _ in due
            ],
        )
        email, sms = render_email(text), render_sms(text)
        errors: list[str] = []
        planned = letter.channel
        for medium in (planned, *FALLBACKS.get(planned, ())):
            to = _address(medium, first, letter.customer_id)
            channel = self._channels.get(medium)
            if to is None or channel is None:
                continue
            breaker = self._board.get(f"notice:{channel.name}")
            try:
                admission = breaker.admit()
            except BreakerOpen:
                errors.append(f"{channel.name}: breaker open")
                continue
            if not self._limiter.hit(self._rate(channel.name), channel.name):
                breaker.record_success(admission)  # not attempted: no evidence either way
                return Later(now + timedelta(seconds=1 / self._rate_value(channel.name)))
            envelope = Envelope(
                key=f"drctl-letter-{letter.id}",
                to=to,
                email=email,
                sms=sms,
                data={
                    "customer_id": letter.customer_id,
                    "kind": letter.kind,
                    "orders": [ln.order_number for ln, _ in due],
                },
            )
            try:
                sent = channel.send(envelope)
            except NoticeChannelError as exc:
                breaker.record_failure(admission, exc)
                errors.append(str(exc))
                continue
            breaker.record_success(admission)
            detail = sent.detail
            if medium != planned:
                detail = f"fallback from {planned}: {'; '.join(errors) or 'no contact'}; {detail}".strip("; ")
            self._finish(
                letter.id,
                [ln for ln, _ in due],
                quiet,
                (medium, channel.name, sent.provider_id, detail),
                now,
                item.attempts,
            )
            log.info(
                "notice letter %s sent via %s to %s (%d orders)",
                letter.id,
                channel.name,
                _masked(medium, to),
                len(due),
            )
            return Finished("sent", detail or None, sent.provider_id)
        raise OutboxError("; ".join(errors) or "no channel can reach the customer")

    def _rate_value(self, name: str) -> float:
        rates = self._cfg.rate_per_s or {}
        return max(0.1, rates.get(name, self._cfg.default_rate_per_s))

    def _rate(self, name: str) -> RateLimitItemPerSecond:
        # whole units per second; a rate under 1/s is enforced as 1 per 1/rate seconds
        value = self._rate_value(name)
        if value >= 1:
            return RateLimitItemPerSecond(int(value))
        return RateLimitItemPerSecond(1, max(1, round(1 / value)))

    def _finish(
        self,
        letter_id: int,
        sent: list[repo.LetterLine],
        quiet: list[tuple[repo.LetterLine, str | None]],
        via: tuple[str, str, str, str] | None,
        now: datetime,
        attempts: int,
    ) -> None:
        with self._sessions.begin() as s:
            letter = repo.letter(s, letter_id)
            assert letter is not None
            for line, why in quiet:
                repo.finish_notices(s, [line.notice_id], repo.SUPPRESSED, now, reason=why, attempts=attempts)
            if via is not None:
                medium, name, provider_id, detail = via
                repo.finish_notices(
                    s,
                    [ln.notice_id for ln in sent],
                    repo.SENT,
                    now,
                    provider_id=provider_id,
                    attempts=attempts + 1,
                )
                letter.sent_via, letter.detail = name, detail[:200] or None
                if letter.incident_id is not None:
                    repo.note_sent_on_incident(s, letter.incident_id, len(sent), medium, now)
            # orders that joined the letter after it was read go out in a letter of their own
            read = {ln.notice_id for ln in sent} | {ln.notice_id for ln, _ in quiet}
            joined = [i for i in repo.pending_of_letter(s, letter_id) if i not in read]
            if joined:
                repo.move_to_new_letter(s, letter, joined, now)
        for line, _ in quiet:
            self._metrics.notices_total.labels(_medium_label(line.notify_via), "suppressed").inc()
        if via is not None:
            self._metrics.notices_total.labels(via[0], "sent").inc(len(sent))


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
        sender = LetterSender(sessions, channels, board, metrics, policy, config, clock)
        self._worker: OutboxWorker[int] = OutboxWorker(
            "notices",
            sessions,
            LETTERS,
            sender,
            board,
            OutboxPolicy(
                # a send may take a timeout per step, and a fallback a second channel's
                lease_s=config.batch * config.timeout_s * 4 + 5,
                batch=config.batch,
                max_attempts=config.max_attempts,
                backoff_base_s=config.backoff_base_s,
                backoff_max_s=config.backoff_max_s,
            ),
            clock,
            self._counted,
        )

    def deliver_due(self, leading: Callable[[], bool] = lambda: True) -> int:
        return self._worker.run_once(None, leading)

    def _counted(self, item: Item[int], status: str) -> None:
        if status not in ("retry", "failed"):
            return  # sent and suppressed are counted per notice by the sender
        now = self._clock()
        with self._sessions.begin() as s:
            pending = repo.pending_of_letter(s, item.payload)
            if status == "failed":
                repo.finish_notices(s, pending, repo.FAILED, now, attempts=item.attempts + 1)
        self._metrics.notices_total.labels(_medium_label(item.lane), status).inc(len(pending))
        log.warning("notice letter %s over %s: %s", item.payload, item.lane, status)

    def close(self) -> None:
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


def delivery_snapshot(session: Session, now: datetime, window_s: float) -> dict[str, Any]:
    """(sent, failed) per channel over the window, for the alert rules' observation."""
    return repo.outcomes_since(session, now - timedelta(seconds=window_s))

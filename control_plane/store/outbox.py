"""The one outbox worker: claim -> lease -> send -> record -> capped, jittered backoff -> give up.

Every outbox (cancels owed to DCs, alert deliveries, customer notices) is a table of rows with
`status` ('pending' until it ends), `attempts`, `last_error`, `created_at` and `next_attempt_at`,
plus a lane column (the DC, the channel) whose breaker guards the sends. Claims lock rows with
`FOR UPDATE SKIP LOCKED` on PostgreSQL and lease them by moving `next_attempt_at` past the
batch's worst case, so replicas never send the same row at once and a crash mid-send only delays
it to the lease's end. No transaction is held across a send: rows are claimed, sent, then
recorded, each in its own short transaction.

A sender answers each item with an outcome: `Finished` (the row ends with that status), `Retry`
(attempted and failed: attempts + 1, backoff or the given time, `failed` once `max_attempts` is
reached) or `Later` (not attempted: come back then, attempts unchanged). A sender that raises
has failed the attempt and counts against the lane's breaker; its error is kept only if it is an
`OutboxError`, whose message the sender promises is safe to store and log.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.orm import Session, sessionmaker

from control_plane.store.db import engine_of
from failover.backoff import retry_delay_s
from failover.breakers import BreakerBoard, BreakerOpen

log = logging.getLogger("drctl.outbox")
PENDING = "pending"
EXPIRED = "expired"
T = TypeVar("T")


class OutboxError(Exception):
    """A failed send whose message carries no secret (URLs with tokens, passwords)."""


@dataclass(frozen=True, slots=True)
class Finished:
    status: str  # the row's final status: sent, done, superseded, conflict, expired ...
    note: str | None = None
    provider_id: str | None = None
    # the sender already stored the row's end, in the transaction that recorded what it sent:
    # one transaction per item instead of two, and nothing for the worker to write
    recorded: bool = False


@dataclass(frozen=True, slots=True)
class Retry:
    error: str | None
    at: datetime | None = None  # None: capped, jittered backoff after the attempt count


@dataclass(frozen=True, slots=True)
class Later:
    at: datetime


Outcome = Finished | Retry | Later


@dataclass(frozen=True, slots=True)
class Item(Generic[T]):
    """One claimed row: its key, lane, bookkeeping and the payload the sender needs."""

    key: tuple[Any, ...]
    lane: str
    attempts: int
    created_at: datetime
    payload: T


class Sender(Protocol[T]):
    """One attempt to deliver one item; raises (OutboxError or anything) when the attempt failed."""

    def send(self, item: Item[T]) -> Outcome: ...


@dataclass(frozen=True, slots=True)
class OutboxPolicy:
    lease_s: float  # longer than a whole batch of sends takes at worst
    batch: int
    max_attempts: int | None  # None: never give up (a cancel owed to a DC must not be forgotten)
    backoff_base_s: float
    backoff_max_s: float
    max_age_s: float | None = None  # older rows end as `expired`, not sent late
    breaker_wait_s: float = 1.0  # how long a row waits when its lane's breaker is open


@dataclass(frozen=True, slots=True)
class OutboxTable(Generic[T]):
    """Where an outbox lives: its ORM row class, lane column, end-time column and payload."""

    row: type[Any]
    lane: str  # attribute of the row naming its lane
    done_at: str  # attribute stamped when the row ends ...
    payload: Callable[[Any], T]
    # None: the sender guards its own calls (it picks among several channels per item)
    breaker_name: Callable[[str], str] | None = lambda lane: lane
    provider_id: str | None = None  # attribute for the provider's id, if the table keeps it
    done_at_statuses: frozenset[str] | None = None  # ... with one of these statuses (None: any)

    def stamp(self, row: Any, status: str, now: datetime) -> None:
        if self.done_at_statuses is None or status in self.done_at_statuses:
            setattr(row, self.done_at, now)


class OutboxWorker(Generic[T]):
    def __init__(
        self,
        name: str,
        sessions: sessionmaker[Session],
        table: OutboxTable[T],
        sender: Sender[T],
        breakers: BreakerBoard,
        policy: OutboxPolicy,
        clock: Callable[[], datetime],
        on_outcome: Callable[[Item[T], str], None] = lambda item, status: None,
        parallelism: int = 1,
    ) -> None:
        self.name = name
        self._parallelism = parallelism
        self._sessions = sessions
        self._table = table
        self._sender = sender
        self._breakers = breakers
        self._policy = policy
        self._clock = clock
        self._on_outcome = on_outcome
        self._rnd = random.Random()
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def run_once(
        self, lane: str | None = None, leading: Callable[[], bool] = lambda: True, due_only: bool = True
    ) -> int:
        """Claim one batch (of `lane`, or of every lane) and send it; return how many the sender ended.

        `leading` is asked before each send: a process that lost the lead stops at once and leaves
        the rest of its leased batch to whoever claims it after the lease. `due_only=False` claims
        rows whatever their next attempt time (a failback flushing a DC's owed cancels). With
        `parallelism` > 1 the batch's items go `parallelism` at a time (each still sent, then
        recorded, in its own transactions), so one item's database round trips overlap another's send.
        """
        items = self.claim(lane, due_only)
        if self._parallelism > 1 and len(items) > 1:
            return sum(self._threads().map(lambda item: self._one(item, leading), items))
        return sum(self._one(item, leading) for item in items)

    def _threads(self) -> ThreadPoolExecutor:
        # kept from batch to batch: starting threads per batch cost a notice burst 5 % of its CPU
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._parallelism, thread_name_prefix=self.name)
            return self._pool

    def close(self) -> None:
        """Let the send threads go (after the batch in flight, if any)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _one(self, item: Item[T], leading: Callable[[], bool]) -> int:
        if not leading():
            return 0
        outcome = self._attempt(item)
        self._record(item, outcome)
        return int(isinstance(outcome, Finished) and outcome.status != EXPIRED)

    def pending(self, lane: str) -> int:
        t = self._table
        stmt = select(func.count()).where(getattr(t.row, t.lane) == lane, t.row.status == PENDING)
        with self._sessions() as s:
            return int(s.scalar(stmt) or 0)

    def claim(self, lane: str | None, due_only: bool = True) -> list[Item[T]]:
        """Lease up to a batch of pending rows in one statement: pick (SKIP LOCKED), push, return."""
        t, now = self._table, self._clock()
        table = t.row.__table__
        key = tuple(table.primary_key.columns)
        pick = select(*key).where(table.c.status == PENDING)
        if due_only:
            pick = pick.where(table.c.next_attempt_at <= now)
        if lane is not None:
            pick = pick.where(table.c[t.lane] == lane)
        pick = pick.order_by(table.c.next_attempt_at).limit(self._policy.batch)
        engine = engine_of(self._sessions)
        if engine.dialect.name == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        lease = now + timedelta(seconds=self._policy.lease_s)
        picked = key[0].in_(pick.scalar_subquery()) if len(key) == 1 else tuple_(*key).in_(pick)
        stmt = update(table).where(picked).values(next_attempt_at=lease).returning(*table.c)
        with engine.begin() as conn:
            rows = sorted(conn.execute(stmt), key=lambda r: r.created_at)
        items = []
        for r in rows:
            row = r._mapping
            identity = tuple(row[c.name] for c in key)
            items.append(Item(identity, row[t.lane], row["attempts"], row["created_at"], t.payload(r)))
        return items

    def _attempt(self, item: Item[T]) -> Outcome:
        now, policy = self._clock(), self._policy
        if policy.max_age_s is not None and (now - item.created_at).total_seconds() > policy.max_age_s:
            return Finished(EXPIRED, f"not delivered within {policy.max_age_s:g} s")
        if self._table.breaker_name is None:
            try:
                return self._sender.send(item)
            except Exception as exc:
                return _failed(exc)
        breaker = self._breakers.get(self._table.breaker_name(item.lane))
        try:
            admission = breaker.admit()
        except BreakerOpen:
            return Later(now + timedelta(seconds=policy.breaker_wait_s))
        try:
            outcome = self._sender.send(item)
        except Exception as exc:
            breaker.record_failure(admission, exc)
            return _failed(exc)
        breaker.record_success(admission)
        return outcome

    def _record(self, item: Item[T], outcome: Outcome) -> None:
        t, now, policy = self._table, self._clock(), self._policy
        if isinstance(outcome, Finished) and outcome.recorded:
            self._on_outcome(item, outcome.status)
            return
        status = PENDING
        with self._sessions.begin() as s:
            row = s.get(t.row, item.key)
            if row is None or row.status != PENDING:
                return  # ended meanwhile (superseded by whoever changed it)
            if isinstance(outcome, Later):
                row.next_attempt_at = outcome.at
                return
            row.attempts = item.attempts + 1
            if isinstance(outcome, Finished):
                status = row.status = outcome.status
                t.stamp(row, status, now)
                row.last_error = outcome.note
                if t.provider_id and outcome.provider_id:
                    setattr(row, t.provider_id, outcome.provider_id[:300])
            elif policy.max_attempts is not None and row.attempts >= policy.max_attempts:
                status = row.status = "failed"
                row.last_error = outcome.error
                t.stamp(row, status, now)
            else:
                status = "retry"
                row.last_error = outcome.error
                delay = retry_delay_s(row.attempts, policy.backoff_base_s, policy.backoff_max_s, self._rnd)
                row.next_attempt_at = outcome.at or now + timedelta(seconds=delay)
        if status == "failed":
            log.warning("%s: %s gave up after %s attempts: %s", self.name, item.key, item.attempts + 1,
                        outcome.error if isinstance(outcome, Retry) else "")  # fmt: skip
        self._on_outcome(item, status)


def _failed(exc: Exception) -> Retry:
    return Retry(str(exc)[:500] if isinstance(exc, OutboxError) else type(exc).__name__)

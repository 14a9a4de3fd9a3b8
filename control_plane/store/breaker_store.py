"""Breaker state shared through Redis, falling back to this process's memory while Redis is away.

pybreaker's Redis storage answers CLOSED on any RedisError (DESIGN §12): a dead Redis would
silently disable every breaker, and a Redis that stops answering would hang each call for as long
as the socket lets it. Here every Redis call has a short timeout; the first one that fails marks
the store down (log line, `drctl_breaker_store_up` 0) and from then on breakers run on per-process
memory, which has seen every write all along, so a breaker that was open stays open. While down,
no request waits on Redis: a background thread pings it, and the first answer shares state again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import pybreaker
import redis

from failover.breakers import MemoryHolds, StorageFactory

log = logging.getLogger("drctl.breakers")
T = TypeVar("T")


class StoreUnavailable(Exception):
    """Redis did not answer. Not a RedisError, so that pybreaker's storage does not swallow it."""


class _Raising:
    """The Redis commands pybreaker's storage and the holds use; RedisError becomes StoreUnavailable."""

    COMMANDS = frozenset({"get", "set", "setnx", "incr", "transaction", "exists", "delete"})

    def __init__(self, conn: redis.Redis) -> None:
        self._conn = conn

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name not in self.COMMANDS:
            raise AttributeError(name)
        command = getattr(self._conn, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return command(*args, **kwargs)
            except redis.RedisError as exc:
                raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc

        return call


class StoreHealth:
    """Whether the shared store answers, for every breaker of this process; pings it while down."""

    def __init__(
        self,
        conn: redis.Redis,
        on_change: Callable[[bool], None],
        ping_interval_s: float = 1.0,
    ) -> None:
        self._conn = conn
        self._on_change = on_change
        self._interval = ping_interval_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.up = True

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            if not self.up:
                return
            self.up = False
        log.error("breaker store (Redis) unreachable (%s): breakers run per process until it answers", exc)
        self._on_change(False)
        threading.Thread(target=self._ping_until_up, name="drctl-breaker-store", daemon=True).start()

    def _ping_until_up(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._conn.ping()
            except redis.RedisError:
                continue
            with self._lock:
                self.up = True
            log.warning("breaker store (Redis) answers again: breaker state is shared again")
            self._on_change(True)
            return

    def through(self, shared: Callable[[], T], local: Callable[[], T]) -> T:
        """`shared()` while the store answers, else (and once it has just failed) `local()`."""
        if self.up:
            try:
                return shared()
            except StoreUnavailable as exc:
                self.failed(exc)
        return local()

    def close(self) -> None:
        self._stop.set()


class FallbackStorage(pybreaker.CircuitBreakerStorage):
    """One breaker's state: in Redis while it answers, else in memory. Writes go to both."""

    def __init__(self, conn: redis.Redis, namespace: str, health: StoreHealth) -> None:
        super().__init__("redis+memory")
        self._conn = _Raising(conn)
        self._namespace = namespace
        self._health = health
        self._memory = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        self._shared: pybreaker.CircuitRedisStorage | None = None  # made on first contact

    def _redis(self) -> pybreaker.CircuitRedisStorage:
        if self._shared is None:
            self._shared = pybreaker.CircuitRedisStorage(
                pybreaker.STATE_CLOSED,
                self._conn,  # type: ignore[arg-type]
                namespace=self._namespace,
            )
        return self._shared

    def _read(self, shared: Callable[[pybreaker.CircuitRedisStorage], T], local: Callable[[], T]) -> T:
        return self._health.through(lambda: shared(self._redis()), local)

    def _write(self, shared: Callable[[pybreaker.CircuitRedisStorage], None]) -> None:
        self._health.through(lambda: shared(self._redis()), lambda: None)

    @property
    def state(self) -> str:
        return self._read(lambda r: r.state, lambda: self._memory.state)

    @state.setter
    def state(self, state: str) -> None:
        self._memory.state = state

        def put(r: pybreaker.CircuitRedisStorage) -> None:
            r.state = state

        self._write(put)

    def increment_counter(self) -> None:
        self._memory.increment_counter()
        self._write(lambda r: r.increment_counter())

    def reset_counter(self) -> None:
        self._memory.reset_counter()
        self._write(lambda r: r.reset_counter())

    def increment_success_counter(self) -> None:
        self._memory.increment_success_counter()
        self._write(lambda r: r.increment_success_counter())

    def reset_success_counter(self) -> None:
        self._memory.reset_success_counter()
        self._write(lambda r: r.reset_success_counter())

    @property
    def counter(self) -> int:
        return self._read(lambda r: r.counter, lambda: self._memory.counter)

    @property
    def success_counter(self) -> int:
        return self._read(lambda r: r.success_counter, lambda: self._memory.success_counter)

    @property
    def opened_at(self) -> datetime | None:
        return self._read(lambda r: r.opened_at, lambda: self._memory.opened_at)

    @opened_at.setter
    def opened_at(self, now: datetime) -> None:
        self._memory.opened_at = now

        def put(r: pybreaker.CircuitRedisStorage) -> None:
            r.opened_at = now

        self._write(put)


class RedisHolds:
    """Operator holds on breakers, in the Redis that shares their state, beside pybreaker's keys."""

    def __init__(self, conn: redis.Redis, health: StoreHealth) -> None:
        self._conn = _Raising(conn)
        self._health = health
        self._memory = MemoryHolds()

    def _key(self, name: str) -> str:
        return f"drctl:{name}:held"

    def held(self, name: str) -> bool:
        return self._health.through(
            lambda: bool(self._conn.exists(self._key(name))), lambda: self._memory.held(name)
        )

    def set_held(self, name: str, held: bool) -> None:
        self._memory.set_held(name, held)
        key = self._key(name)
        self._health.through(
            lambda: self._conn.set(key, "1") if held else self._conn.delete(key), lambda: None
        )


def redis_breaker_store(
    url: str, timeout_s: float, on_change: Callable[[bool], None], ping_interval_s: float = 1.0
) -> tuple[StorageFactory, RedisHolds, StoreHealth]:
    """Storage for every breaker and the holds, shared through Redis at `url`."""
    conn = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    health = StoreHealth(conn, on_change, ping_interval_s)

    def factory(name: str) -> pybreaker.CircuitBreakerStorage:
        return FallbackStorage(conn, f"drctl:{name}", health)

    return factory, RedisHolds(conn, health), health

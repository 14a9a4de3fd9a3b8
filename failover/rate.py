"""Rate limits per key (a notice channel, a client): token buckets, thread-safe, on an injected clock.

Written here rather than taken from `limits`: its in-memory storage starts a timer thread every
10 ms of use to expire its counters, which cost a notice burst 6 % of its CPU (bench/notices).
A bucket is two floats per key and needs no expiry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """`rate_per_s` calls per second per key, with bursts of up to `burst` (default: one second's worth)."""

    def __init__(
        self,
        rate_per_s: Callable[[str], float],
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int | None = None,
    ) -> None:
        self._rate = rate_per_s
        self._burst = burst
        self._clock = clock
        self._max_keys = max_keys  # keys from outside (client addresses) must not grow it forever
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def try_acquire(self, key: str) -> float:
        """Take one call of `key`'s allowance: 0.0 when taken, else the seconds until one is free."""
        return self._take(key, consume=True)

    def wait_s(self, key: str) -> float:
        """The seconds until `key` may make a call (0.0: now), taking nothing."""
        return self._take(key, consume=False)

    def _take(self, key: str, consume: bool) -> float:
        rate = self._rate(key)
        if rate <= 0:
            raise ValueError(f"rate for {key!r} must be positive, got {rate}")
        capacity = self._burst if self._burst is not None else max(1.0, rate)
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if not consume:
                    return 0.0
                if self._max_keys is not None and len(self._buckets) >= self._max_keys:
                    self._forget_full(now, rate, capacity)
                bucket = self._buckets[key] = _Bucket(capacity, now)
            # a clock that steps back (a test's, or a monotonic one never does) refills nothing
            bucket.tokens = min(capacity, bucket.tokens + max(0.0, now - bucket.at) * rate)
            bucket.at = now
            if bucket.tokens >= 1.0:
                if consume:
                    bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / rate

    def _forget_full(self, now: float, rate: float, capacity: float) -> None:
        """Drop buckets that have refilled (a new one is the same), or all when none has."""
        full = [k for k, b in self._buckets.items() if b.tokens + (now - b.at) * rate >= capacity]
        for k in full or list(self._buckets):
            del self._buckets[k]

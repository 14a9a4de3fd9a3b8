"""The shared breaker store dies and comes back: a Redis of the test's own, SIGKILLed and restarted.

pybreaker's own Redis storage reads CLOSED on any error (DESIGN §12): a dead Redis would silently
turn every breaker off. Ours falls back to the process's memory, keeps an open breaker open, says so
(the callback behind `drctl_breaker_store_up`), and shares state again once Redis answers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from control_plane.domain import BreakerState
from control_plane.store.breaker_store import redis_breaker_store
from failover.breakers import BreakerOpen, BreakerPolicy, GatedBreaker
from failover.dispatch import DcUnavailable, FailureKind

from servers import RedisServer, redis_server

POLICY = BreakerPolicy(fail_max=3, reset_timeout_s=60, success_threshold=1)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path) as server:
        yield server


def wait_until(check: object, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def trip(b: GatedBreaker) -> None:
    for _ in range(POLICY.fail_max):
        b.record_failure(b.admit(), DcUnavailable(FailureKind.TIMEOUT, "ReadTimeout"))


def test_an_open_breaker_stays_open_when_redis_dies_and_state_is_shared_again_when_it_returns(
    redis: RedisServer,
) -> None:
    changes: list[bool] = []
    factory, holds, health = redis_breaker_store(redis.url, 0.2, changes.append, ping_interval_s=0.1)
    try:
        a = GatedBreaker("icheon", POLICY, factory("icheon"), holds=holds)
        b = GatedBreaker("icheon", POLICY, factory("icheon"), holds=holds)  # another replica's view
        trip(a)
        assert b.state is BreakerState.OPEN  # shared through Redis

        redis.kill()
        # the first read that fails marks the store down; the open breaker is still open
        assert a.state is BreakerState.OPEN
        assert changes == [False] and not health.up
        with pytest.raises(BreakerOpen):
            a.admit()
        # a closed breaker keeps working per process: failures count, it opens, it closes again
        c = GatedBreaker("busan", POLICY, factory("busan"), holds=holds)
        assert not c.admit().trial
        trip(c)
        assert c.state is BreakerState.OPEN
        c.force(BreakerState.CLOSED)  # an operator action while Redis is down is not a 500
        assert c.state is BreakerState.CLOSED

        redis.start()  # an empty Redis on the same port, as after a restart without persistence
        assert wait_until(lambda: changes == [False, True]), "the store never came back up"
        assert health.up
        a.force(BreakerState.OPEN)
        assert b.state is BreakerState.OPEN and b.held  # shared again, holds included
    finally:
        health.close()


def test_a_dead_redis_at_start_gives_working_breakers_not_an_error(redis: RedisServer) -> None:
    changes: list[bool] = []
    redis.kill()
    factory, holds, health = redis_breaker_store(redis.url, 0.2, changes.append, ping_interval_s=0.1)
    try:
        b = GatedBreaker("daejeon", POLICY, factory("daejeon"), holds=holds)
        assert b.state is BreakerState.CLOSED
        trip(b)
        assert b.state is BreakerState.OPEN
        assert changes == [False]
    finally:
        health.close()

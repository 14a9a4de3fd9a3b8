"""One contract for every breaker storage: in-process memory and Redis (shared between replicas)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pybreaker
import pytest
import redis

from control_plane.context import redis_storage_factory
from control_plane.domain import BreakerState
from failover.breakers import BreakerPolicy, GatedBreaker
from failover.dispatch import DcUnavailable, FailureKind

from conftest import IN_CI

REDIS_URL = "redis://127.0.0.1:6379/15"
POLICY = BreakerPolicy(fail_max=3, reset_timeout_s=60, success_threshold=1)
StorageFactory = Callable[[str], pybreaker.CircuitBreakerStorage]


@pytest.fixture(params=["memory", "redis"])
def storage_factory(request: pytest.FixtureRequest) -> Iterator[StorageFactory]:
    if request.param == "memory":
        shared: dict[str, pybreaker.CircuitMemoryStorage] = {}
        yield lambda name: shared.setdefault(name, pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED))
        return
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        msg = f"Redis at 127.0.0.1:6379 is not reachable ({exc}); breaker storage ran on memory only"
        if IN_CI:
            pytest.fail("CI=true: " + msg, pytrace=False)
        pytest.skip("SKIPPED LOUDLY: " + msg)
    prefix = uuid.uuid4().hex[:8]
    factory = redis_storage_factory(REDIS_URL)
    yield lambda name: factory(f"{prefix}-{name}")


def failure() -> DcUnavailable:
    return DcUnavailable(FailureKind.TIMEOUT, "ReadTimeout")


def test_storage_opens_after_fail_max(storage_factory: StorageFactory) -> None:
    b = GatedBreaker("icheon", POLICY, storage_factory("icheon"))
    for _ in range(3):
        b.record_failure(b.admit(), failure())
    assert b.state is BreakerState.OPEN


def test_two_replicas_sharing_storage_see_the_same_open_breaker(storage_factory: StorageFactory) -> None:
    # given two control-plane replicas, each with its own breaker object over one storage
    replica_a = GatedBreaker("busan", POLICY, storage_factory("busan"))
    replica_b = GatedBreaker("busan", POLICY, storage_factory("busan"))
    # when replica A sees the DC fail fail_max times
    for _ in range(3):
        replica_a.record_failure(replica_a.admit(), failure())
    # then replica B refuses calls too, without having failed once itself
    assert replica_b.state is BreakerState.OPEN
    assert replica_b.routable_state is BreakerState.OPEN


def test_failures_from_two_replicas_add_up(storage_factory: StorageFactory) -> None:
    replica_a = GatedBreaker("daejeon", POLICY, storage_factory("daejeon"))
    replica_b = GatedBreaker("daejeon", POLICY, storage_factory("daejeon"))
    replica_a.record_failure(replica_a.admit(), failure())
    replica_b.record_failure(replica_b.admit(), failure())
    assert replica_a.state is BreakerState.CLOSED
    replica_a.record_failure(replica_a.admit(), failure())
    assert replica_b.state is BreakerState.OPEN


def test_operator_close_is_seen_by_every_replica(storage_factory: StorageFactory) -> None:
    replica_a = GatedBreaker("gwangju", POLICY, storage_factory("gwangju"))
    replica_b = GatedBreaker("gwangju", POLICY, storage_factory("gwangju"))
    replica_a.force(BreakerState.OPEN)
    assert replica_b.state is BreakerState.OPEN
    replica_b.force(BreakerState.CLOSED)
    assert replica_a.state is BreakerState.CLOSED
    replica_a.admit()

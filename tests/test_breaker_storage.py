"""One contract for every breaker storage: in-process memory and Redis (shared between replicas)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pybreaker
import pytest
import redis

from control_plane.domain import BreakerState
from control_plane.store.breaker_store import redis_breaker_store
from failover.breakers import BreakerOpen, BreakerPolicy, GatedBreaker, Holds, MemoryHolds
from failover.dispatch import DcUnavailable, FailureKind

from conftest import IN_CI

REDIS_URL = "redis://127.0.0.1:6379/15"
POLICY = BreakerPolicy(fail_max=3, reset_timeout_s=60, success_threshold=1)
StorageFactory = Callable[[str], pybreaker.CircuitBreakerStorage]
# with no cooling, an open breaker is due its trial at once: only a hold keeps it refusing
NO_COOLING = BreakerPolicy(fail_max=3, reset_timeout_s=0, success_threshold=1)


class PrefixedHolds:
    def __init__(self, prefix: str, holds: Holds) -> None:
        self._prefix, self._holds = prefix, holds

    def held(self, name: str) -> bool:
        return self._holds.held(self._prefix + name)

    def set_held(self, name: str, held: bool) -> None:
        self._holds.set_held(self._prefix + name, held)


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[tuple[StorageFactory, Holds]]:
    if request.param == "memory":
        shared: dict[str, pybreaker.CircuitMemoryStorage] = {}
        yield (
            lambda name: shared.setdefault(name, pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)),
            MemoryHolds(),
        )
        return
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        msg = f"Redis at 127.0.0.1:6379 is not reachable ({exc}); breaker storage ran on memory only"
        if IN_CI:
            pytest.fail("CI=true: " + msg, pytrace=False)
        pytest.skip("SKIPPED LOUDLY: " + msg)
    prefix = uuid.uuid4().hex[:8] + "-"
    factory, holds, _ = redis_breaker_store(REDIS_URL, 1.0, lambda up: None)
    yield (lambda name: factory(prefix + name)), PrefixedHolds(prefix, holds)


@pytest.fixture
def storage_factory(store: tuple[StorageFactory, Holds]) -> StorageFactory:
    return store[0]


def replicas(
    store: tuple[StorageFactory, Holds], name: str, policy: BreakerPolicy = POLICY
) -> list[GatedBreaker]:
    factory, holds = store
    return [GatedBreaker(name, policy, factory(name), holds=holds) for _ in range(2)]


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


def test_a_held_breaker_refuses_past_its_reset_timeout_on_every_replica(
    store: tuple[StorageFactory, Holds],
) -> None:
    a, b = replicas(store, "icheon", NO_COOLING)
    a.force(BreakerState.OPEN)
    for replica in (a, b):
        assert replica.held
        assert replica.routable_state is BreakerState.OPEN
        with pytest.raises(BreakerOpen):
            replica.admit()


def test_an_automatic_open_is_due_its_trial_after_the_reset_timeout(
    store: tuple[StorageFactory, Holds],
) -> None:
    a, b = replicas(store, "busan", NO_COOLING)
    for _ in range(3):
        a.record_failure(a.admit(), failure())
    assert not b.held
    assert b.routable_state is BreakerState.HALF_OPEN
    assert b.admit().trial


def test_reset_ends_the_hold_with_one_trial_call(store: tuple[StorageFactory, Holds]) -> None:
    a, b = replicas(store, "daegu")
    a.force(BreakerState.OPEN)
    b.reset()
    assert not a.held
    assert a.state is BreakerState.HALF_OPEN
    trial = a.admit()
    assert trial.trial
    with pytest.raises(BreakerOpen):
        a.admit()  # one trial at a time
    a.record_success(trial)
    assert b.state is BreakerState.CLOSED


def test_close_ends_the_hold_and_admits_at_once(store: tuple[StorageFactory, Holds]) -> None:
    a, b = replicas(store, "ulsan")
    a.force(BreakerState.OPEN)
    b.force(BreakerState.CLOSED)
    assert not a.held
    assert not a.admit().trial

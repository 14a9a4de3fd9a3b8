"""Breaker policy around DC calls: pure logic, no network (a fake DcClient stands in for HTTP)."""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pybreaker
import pytest

from control_plane.domain import AttemptOutcome, BreakerState, Site
from failover.backoff import retry_delay_s
from failover.breakers import BreakerBoard, BreakerOpen, BreakerPolicy, GatedBreaker
from failover.dispatch import (
    CancelOutcome,
    DcAck,
    DcRejected,
    DcUnavailable,
    FailureKind,
    dispatch_once,
)

from factories import site

POLICY = BreakerPolicy(fail_max=3, reset_timeout_s=30, success_threshold=1)


def breaker(policy: BreakerPolicy = POLICY) -> tuple[GatedBreaker, pybreaker.CircuitMemoryStorage]:
    storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
    return GatedBreaker("icheon", policy, storage), storage


def fail(b: GatedBreaker, n: int = 1) -> None:
    for _ in range(n):
        b.record_failure(b.admit(), DcUnavailable(FailureKind.TIMEOUT, "slow"))


def cool_down(storage: pybreaker.CircuitMemoryStorage) -> None:
    """Move the breaker's clock past its reset timeout instead of sleeping."""
    storage.opened_at = datetime.now(UTC) - timedelta(hours=1)


def test_breaker_opens_after_fail_max_consecutive_failures() -> None:
    b, _ = breaker()
    fail(b, 2)
    assert b.state is BreakerState.CLOSED
    fail(b)
    assert b.state is BreakerState.OPEN
    with pytest.raises(BreakerOpen):
        b.admit()


def test_a_success_resets_the_failure_count() -> None:
    b, _ = breaker()
    fail(b, 2)
    b.record_success(b.admit())
    fail(b, 2)
    assert b.state is BreakerState.CLOSED


def test_after_reset_timeout_one_trial_at_a_time_is_admitted() -> None:
    b, storage = breaker()
    fail(b, 3)
    cool_down(storage)
    assert b.routable_state is BreakerState.HALF_OPEN
    trial = b.admit()
    assert trial.trial
    with pytest.raises(BreakerOpen):
        b.admit()  # a second caller waits for the trial's verdict
    b.record_success(trial)
    assert b.state is BreakerState.CLOSED


def test_failed_trial_reopens_the_breaker() -> None:
    b, storage = breaker()
    fail(b, 3)
    cool_down(storage)
    trial = b.admit()
    b.record_failure(trial, DcUnavailable(FailureKind.REFUSED, "down"))
    assert b.state is BreakerState.OPEN
    assert b.routable_state is BreakerState.OPEN


def test_success_of_a_call_admitted_before_the_trial_does_not_close_the_breaker() -> None:
    b, storage = breaker(BreakerPolicy(fail_max=3, reset_timeout_s=30, success_threshold=1))
    early = b.admit()
    fail(b, 3)
    cool_down(storage)
    trial = b.admit()
    b.record_success(early)  # stale: says nothing about the DC now
    assert b.state is BreakerState.HALF_OPEN
    b.record_failure(trial, DcUnavailable(FailureKind.TIMEOUT, "still slow"))
    assert b.state is BreakerState.OPEN


def test_concurrent_calls_are_not_serialized_by_the_breaker() -> None:
    # eight calls must be inside the guarded section at the same time to pass the barrier;
    # plain pybreaker holds its lock across the call, so the barrier would break (DESIGN §12)
    b, _ = breaker()
    barrier = threading.Barrier(8, timeout=10)
    errors: list[BaseException] = []

    def call() -> None:
        admission = b.admit()
        try:
            barrier.wait()
            b.record_success(admission)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_operator_can_force_a_breaker_open_and_closed() -> None:
    b, _ = breaker()
    b.force(BreakerState.OPEN)
    assert b.state is BreakerState.OPEN
    b.force(BreakerState.CLOSED)
    assert b.state is BreakerState.CLOSED
    b.admit()


class FakeDc:
    """Answers from a script instead of the network: the policy is what is under test."""

    def __init__(self, *answers: Exception | DcAck) -> None:
        self.answers = list(answers)
        self.calls = 0

    def submit(self, site: Site, payload: Mapping[str, Any]) -> DcAck:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def cancel(self, site: Site, order_id: str) -> CancelOutcome:
        return CancelOutcome.UNKNOWN


def test_dispatch_counts_5xx_and_timeouts_but_not_4xx() -> None:
    board = BreakerBoard(POLICY)
    dc = FakeDc(
        DcRejected(422, "bad line"),
        DcRejected(409, "duplicate"),
        DcUnavailable(FailureKind.SERVER_ERROR, "HTTP 503"),
        DcUnavailable(FailureKind.TIMEOUT, "ReadTimeout"),
        DcRejected(400, "nope"),
    )
    outcomes = [dispatch_once(board, dc, site(), {"order_id": "o"}).outcome for _ in range(5)]
    assert outcomes == [
        AttemptOutcome.REJECTED,
        AttemptOutcome.REJECTED,
        AttemptOutcome.FAILED,
        AttemptOutcome.FAILED,
        AttemptOutcome.REJECTED,
    ]
    assert board.get("icheon").state is BreakerState.CLOSED  # the 4xx in between reset the count


def test_dispatch_after_fail_max_does_not_call_the_dc() -> None:
    board = BreakerBoard(POLICY)
    dc = FakeDc(*[DcUnavailable(FailureKind.REFUSED, "ConnectError", may_have_reached_dc=False)] * 3)
    results = [dispatch_once(board, dc, site(), {"order_id": "o"}) for _ in range(5)]
    assert [r.outcome for r in results] == [AttemptOutcome.REFUSED] * 3 + [AttemptOutcome.BREAKER_OPEN] * 2
    assert dc.calls == 3
    assert not any(r.needs_cancel for r in results)  # refused connections never reached the DC


def test_timeout_marks_the_attempt_as_needing_a_cancel() -> None:
    board = BreakerBoard(POLICY)
    result = dispatch_once(board, FakeDc(DcUnavailable(FailureKind.TIMEOUT, "ReadTimeout")), site(), {})
    assert result.needs_cancel


def test_accepted_attempt_carries_the_dc_reference() -> None:
    result = dispatch_once(BreakerBoard(POLICY), FakeDc(DcAck("ICHEON-1", "accepted")), site(), {})
    assert (result.outcome, result.dc_ref) == (AttemptOutcome.ACCEPTED, "ICHEON-1")


def test_retry_delay_grows_and_is_capped() -> None:
    rnd = random.Random(1)
    delays = [retry_delay_s(n, base_s=1, max_s=30, rnd=rnd) for n in range(1, 10)]
    assert delays[0] <= 1.2 and delays[3] >= 8 * 0.8
    assert max(delays) <= 30 * 1.2
    with pytest.raises(ValueError):
        retry_delay_s(0, 1, 30)


def test_with_breakers_off_every_call_is_admitted_and_nothing_trips() -> None:
    from failover.breakers import BreakerPolicy as _Policy
    from failover.breakers import GatedBreaker as _Gated

    breaker = _Gated("icheon", _Policy(fail_max=1, enabled=False))
    for _ in range(10):
        admission = breaker.admit()
        breaker.record_failure(admission, RuntimeError("refused"))
    assert breaker.state.value == "closed" and breaker.fail_counter == 0

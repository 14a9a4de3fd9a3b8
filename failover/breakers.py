"""Circuit breakers around DC calls that never serialize the guarded call.

pybreaker holds its lock for the whole guarded call (DESIGN §12, its issue #55): sixteen threads
calling a 50 ms DC through one breaker run one at a time. We keep pybreaker's state machine and
storage (memory or Redis, shared between replicas) but split a call in three: `admit()` asks the
breaker whether a call may go out, the call runs outside any lock, and `record_success()` /
`record_failure()` feed the outcome back through `CircuitBreaker.call` with a trivial function,
so the lock is held only for the bookkeeping. In half-open state one trial call is admitted at a
time per process.

An operator may hold a breaker open (`force(OPEN)`): it then admits nothing until closed or reset,
however long past its reset timeout. The hold lives beside pybreaker's storage (`Holds`) so that it
is shared the same way; pybreaker's own `opened_at` cannot carry it, since its Redis storage only
ever moves that time forward.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NoReturn, Protocol

import pybreaker

from control_plane.domain import BreakerState

StorageFactory = Callable[[str], pybreaker.CircuitBreakerStorage]
StateChange = Callable[[str, BreakerState, BreakerState], None]


class BreakerOpen(Exception):
    """The breaker refused the call without attempting it."""

    def __init__(self, name: str) -> None:
        super().__init__(f"circuit breaker {name!r} is open")
        self.name = name


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    fail_max: int = 5
    reset_timeout_s: float = 10.0
    success_threshold: int = 2
    trial_timeout_s: float = 30.0  # a trial call never reported back frees the slot after this
    # off only for a negative control (a drill showing what happens without breakers): every
    # call is admitted, nothing is recorded, the state stays closed
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class Admission:
    trial: bool


class Holds(Protocol):
    """Which breakers an operator holds open (shared between replicas when the breakers are)."""

    def held(self, name: str) -> bool: ...

    def set_held(self, name: str, held: bool) -> None: ...


class MemoryHolds:
    def __init__(self) -> None:
        self._names: set[str] = set()

    def held(self, name: str) -> bool:
        return name in self._names

    def set_held(self, name: str, held: bool) -> None:
        if held:
            self._names.add(name)
        else:
            self._names.discard(name)


def _succeed() -> None:
    return None


def _fail(exc: BaseException) -> NoReturn:
    raise exc


class _Listener(pybreaker.CircuitBreakerListener):
    def __init__(self, on_change: StateChange) -> None:
        self._on_change = on_change

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        old = BreakerState(old_state.name) if old_state is not None else BreakerState.CLOSED
        self._on_change(cb.name or "", old, BreakerState(new_state.name))


class GatedBreaker:
    """A pybreaker breaker used as admit → call (unlocked) → record."""

    def __init__(
        self,
        name: str,
        policy: BreakerPolicy,
        storage: pybreaker.CircuitBreakerStorage | None = None,
        on_change: StateChange | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        holds: Holds | None = None,
    ) -> None:
        listeners = [_Listener(on_change)] if on_change else []
        self.name = name
        self.policy = policy
        self._cb = pybreaker.CircuitBreaker(
            fail_max=policy.fail_max,
            reset_timeout=policy.reset_timeout_s,
            success_threshold=policy.success_threshold,
            state_storage=storage,
            listeners=listeners,
            name=name,
        )
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0  # admitted calls not yet recorded, in this process
        self._trial_started: float | None = None
        self._monotonic = monotonic
        self._holds = holds or MemoryHolds()

    @property
    def state(self) -> BreakerState:
        return BreakerState(self._cb.state.name)

    @property
    def routable_state(self) -> BreakerState:
        """The state as routing should see it: open past its reset timeout admits a trial."""
        state = self.state
        if state is BreakerState.OPEN and not self._refusing():
            return BreakerState.HALF_OPEN
        return state

    @property
    def held(self) -> bool:
        """Held open by an operator: admits nothing until closed or reset."""
        return self.state is BreakerState.OPEN and self._holds.held(self.name)

    def _refusing(self) -> bool:
        """Open and not yet due a trial call: cooling down, or held by an operator."""
        return self._still_cooling() or self._holds.held(self.name)

    def _still_cooling(self) -> bool:
        opened_at = self._cb._state_storage.opened_at  # pybreaker exposes no public getter
        timeout = timedelta(seconds=self._cb.reset_timeout)
        return opened_at is not None and datetime.now(UTC) < opened_at + timeout

    @property
    def fail_counter(self) -> int:
        return self._cb.fail_counter

    def admit(self) -> Admission:
        """Let a call go out or raise BreakerOpen; the caller must record its outcome."""
        if not self.policy.enabled:
            return Admission(trial=False)
        with self._lock:
            state = self._cb.state.name
            if state == pybreaker.STATE_CLOSED:
                self._in_flight += 1
                return Admission(trial=False)
            if state == pybreaker.STATE_OPEN and self._refusing():
                raise BreakerOpen(self.name)
            trial_busy = self._trial_started is not None and (
                self._monotonic() - self._trial_started < self.policy.trial_timeout_s
            )
            if trial_busy:
                raise BreakerOpen(self.name)
            if state == pybreaker.STATE_OPEN:
                self._cb.half_open()
            self._trial_started = self._monotonic()
            self._in_flight += 1
            return Admission(trial=True)

    def record_success(self, admission: Admission) -> None:
        self._record(admission, None)

    def record_failure(self, admission: Admission, exc: BaseException) -> None:
        self._record(admission, exc)

    def _record(self, admission: Admission, exc: BaseException | None) -> None:
        if not self.policy.enabled:
            return
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            if self._in_flight == 0:
                self._idle.notify_all()
            if admission.trial:
                self._trial_started = None
            state = self._cb.state.name
            # An outcome from a call admitted before the breaker opened (or before the trial
            # began) says nothing about the trial: only the trial may move a half-open breaker.
            if state == pybreaker.STATE_OPEN or (state == pybreaker.STATE_HALF_OPEN and not admission.trial):
                return
            try:
                if exc is None:
                    self._cb.call(_succeed)
                else:
                    self._cb.call(_fail, exc)
            except pybreaker.CircuitBreakerError:
                pass  # this failure tripped the breaker: expected, the state change is notified
            except BaseException as raised:
                if raised is not exc:
                    raise

    def force(self, target: BreakerState, hold: bool = True) -> None:
        """Operator override: hold the breaker open (or open it for its reset timeout only, with
        `hold=False`), or close or half-open it now, ending a hold."""
        with self._lock:
            self._trial_started = None
            self._holds.set_held(self.name, hold and target is BreakerState.OPEN)
            if target is BreakerState.OPEN:
                self._cb.open()
            elif target is BreakerState.HALF_OPEN:
                self._cb.half_open()
            else:
                self._cb.close()

    def reset(self) -> None:
        """End any hold and let calls decide again: an open breaker admits one trial call now, a
        closed one counts failures from zero."""
        self.force(BreakerState.CLOSED if self.state is BreakerState.CLOSED else BreakerState.HALF_OPEN)

    def wait_idle(self, timeout_s: float) -> int:
        """Wait until no call admitted by this process is still out; the number still out at the end."""
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout_s)
            return self._in_flight


class BreakerBoard:
    """One breaker per name (a site's DC, later integrations and alert channels)."""

    def __init__(
        self,
        policy: BreakerPolicy,
        storage_factory: StorageFactory | None = None,
        on_change: StateChange | None = None,
        holds: Holds | None = None,
    ) -> None:
        self.policy = policy
        self._holds = holds or MemoryHolds()
        self._storage_factory = storage_factory
        self._on_change = on_change
        self._breakers: dict[str, GatedBreaker] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> GatedBreaker:
        breaker = self._breakers.get(name)
        if breaker is None:
            with self._lock:
                breaker = self._breakers.get(name)
                if breaker is None:
                    storage = self._storage_factory(name) if self._storage_factory else None
                    breaker = GatedBreaker(name, self.policy, storage, self._on_change, holds=self._holds)
                    self._breakers[name] = breaker
        return breaker

    def names(self) -> list[str]:
        return sorted(self._breakers)

    def states(self) -> dict[str, BreakerState]:
        return {name: b.state for name, b in sorted(self._breakers.items())}

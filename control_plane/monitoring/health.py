"""Health of one probed target (a DC or an integration) with hysteresis, as a pure state machine.

The rules, in the spirit of Route 53 health checks:

- A target starts `unknown`.
- A failed probe (an error, a non-2xx answer, or an answer slower than `timeout_s`) resets the
  success streak. `failure_threshold` consecutive failures make the target `down`; fewer make a
  target that is not already down `degraded`: an early warning that routing still tolerates, so a
  single lost probe never moves orders.
- A successful probe resets the failure streak. `success_threshold` consecutive successes make the
  target `healthy`; fewer leave it where it is, so a `down` target does not flap back on one lucky
  probe.
- Passive signals count too: `breaker_opened` makes a healthy/unknown target `degraded` at once
  (real order calls are failing, which is stronger evidence than a probe) and holds it at most
  `degraded` while the breaker stays open; it never makes a target `down` on its own, because
  only probes can say the target is unreachable rather than slow or erroring.
  `breaker_closed` lifts that cap: a target whose probes have passed the success threshold
  becomes `healthy` at once. The cap also lapses `breaker_hold_s` after the breaker opened (every
  trial that fails opens it again): a close can be lost (the replica that saw the breaker open
  restarted), and then passing probes must win in the end.

Every change yields a `Transition` for the store's timeline; targets are named by the caller
(the convention is `site:<code>` / `integration:<code>`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from control_plane.domain import FieldError, Health, InvalidInput


@dataclass(frozen=True, slots=True)
class ProbePolicy:
    """How often and how strictly one target is probed."""

    interval_s: float = 10.0
    timeout_s: float = 2.0
    failure_threshold: int = 3
    success_threshold: int = 2
    breaker_hold_s: float = 120.0

    def __post_init__(self) -> None:
        errors: list[FieldError] = []
        if self.interval_s <= 0:
            errors.append(FieldError("interval_s", "must be > 0"))
        # A probe that may run longer than the interval would overlap the next one.
        if not 0 < self.timeout_s <= self.interval_s:
            errors.append(FieldError("timeout_s", "must be > 0 and <= interval_s"))
        if self.failure_threshold < 1:
            errors.append(FieldError("failure_threshold", "must be >= 1"))
        if self.success_threshold < 1:
            errors.append(FieldError("success_threshold", "must be >= 1"))
        if errors:
            raise InvalidInput("invalid probe policy", errors)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe's outcome as the prober saw it."""

    at: datetime
    ok: bool
    latency_s: float | None = None
    detail: str = ""  # e.g. "HTTP 503", "connection refused"; shown in transition reasons


class Signal(StrEnum):
    """Passive evidence about a target that does not come from its probe."""

    BREAKER_OPENED = "breaker_opened"
    BREAKER_CLOSED = "breaker_closed"


@dataclass(frozen=True, slots=True)
class HealthState:
    """Everything the state machine needs to remember about one target (stored as a row)."""

    target: str
    health: Health = Health.UNKNOWN
    since: datetime | None = None  # when `health` last changed
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    breaker_open: bool = False
    last_probe_at: datetime | None = None
    last_detail: str = ""
    breaker_opened_at: datetime | None = None

    def breaker_holds(self, at: datetime, policy: ProbePolicy) -> bool:
        """Whether a breaker signal still caps the health at `at`."""
        if not self.breaker_open:
            return False
        opened = self.breaker_opened_at
        return opened is None or (at - opened).total_seconds() < policy.breaker_hold_s


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of health, for the timeline (`from_` because `from` is a keyword)."""

    target: str
    from_: Health
    to: Health
    at: datetime
    reason: str


def is_failure(result: ProbeResult, policy: ProbePolicy) -> bool:
    """Whether `result` counts as a failure: not ok, or answered later than the timeout."""
    # The HTTP client enforces the timeout too; this keeps a late answer from counting as healthy
    # when the client's clock and ours disagree.
    return not result.ok or (result.latency_s is not None and result.latency_s > policy.timeout_s)


def observe_probe(
    state: HealthState, result: ProbeResult, policy: ProbePolicy
) -> tuple[HealthState, Transition | None]:
    """Fold one probe result into `state`; return the new state and the transition, if any."""
    if is_failure(result, policy):
        failures = state.consecutive_failures + 1
        detail = result.detail or _timeout_detail(result, policy)
        if failures >= policy.failure_threshold:
            target = Health.DOWN
            reason = f"{failures} consecutive failed probes (threshold {policy.failure_threshold})"
        else:
            target = Health.DOWN if state.health is Health.DOWN else Health.DEGRADED
            reason = f"failed probe {failures} of {policy.failure_threshold} before down"
        new = replace(
            state,
            consecutive_failures=failures,
            consecutive_successes=0,
            last_probe_at=result.at,
            last_detail=detail,
        )
        return _move(new, target, result.at, f"{reason}: {detail}" if detail else reason)

    successes = state.consecutive_successes + 1
    new = replace(
        state,
        consecutive_failures=0,
        consecutive_successes=successes,
        last_probe_at=result.at,
        last_detail=result.detail,
        breaker_open=state.breaker_holds(result.at, policy),
    )
    if successes < policy.success_threshold:
        return new, None  # hysteresis: not enough evidence to change anything yet
    if new.breaker_open:
        return _move(new, Health.DEGRADED, result.at, "probes pass but the breaker is open")
    return _move(
        new,
        Health.HEALTHY,
        result.at,
        f"{successes} consecutive successful probes (threshold {policy.success_threshold})",
    )


def observe_signal(
    state: HealthState, signal: Signal, at: datetime, policy: ProbePolicy
) -> tuple[HealthState, Transition | None]:
    """Fold a passive signal (a breaker opening or closing) into `state`."""
    if signal is Signal.BREAKER_OPENED:
        new = replace(state, breaker_open=True, breaker_opened_at=at)
        if state.health in (Health.HEALTHY, Health.UNKNOWN):
            return _move(new, Health.DEGRADED, at, "breaker opened")
        return new, None
    new = replace(state, breaker_open=False, breaker_opened_at=None)
    # Only a target held at degraded by the breaker alone recovers here; one degraded by a
    # failed probe still needs its success streak.
    if state.health is Health.DEGRADED and state.consecutive_successes >= policy.success_threshold:
        return _move(new, Health.HEALTHY, at, "breaker closed and probes pass")
    return new, None


def next_probe_at(state: HealthState, policy: ProbePolicy) -> datetime | None:
    """When the target is next due for a probe (None: now, it was never probed)."""
    if state.last_probe_at is None:
        return None
    return state.last_probe_at + timedelta(seconds=policy.interval_s)


def probe_due(state: HealthState, policy: ProbePolicy, now: datetime) -> bool:
    """Whether the scheduler should probe the target at `now`."""
    due = next_probe_at(state, policy)
    return due is None or now >= due


def _timeout_detail(result: ProbeResult, policy: ProbePolicy) -> str:
    if result.ok and result.latency_s is not None:
        return f"answered after {result.latency_s:.3f} s, over the {policy.timeout_s:g} s timeout"
    return ""


def _move(state: HealthState, to: Health, at: datetime, reason: str) -> tuple[HealthState, Transition | None]:
    if state.health is to:
        return state, None
    transition = Transition(state.target, state.health, to, at, reason)
    return replace(state, health=to, since=at), transition


@dataclass(slots=True)
class HealthTracker:
    """Health of many targets under one policy, in memory (the store persists what it returns).

    A convenience over `observe_probe`/`observe_signal` for the prober job and for tests; it
    holds no clock and starts no threads.
    """

    policy: ProbePolicy
    states: dict[str, HealthState] = field(default_factory=dict)

    def state(self, target: str) -> HealthState:
        """The target's current state (`unknown` when never observed)."""
        return self.states.get(target) or HealthState(target)

    def health(self, target: str) -> Health:
        return self.state(target).health

    def probe(self, target: str, result: ProbeResult) -> Transition | None:
        """Record one probe result; return the transition it caused, if any."""
        self.states[target], transition = observe_probe(self.state(target), result, self.policy)
        return transition

    def signal(self, target: str, signal: Signal, at: datetime) -> Transition | None:
        """Record a passive signal; return the transition it caused, if any."""
        self.states[target], transition = observe_signal(self.state(target), signal, at, self.policy)
        return transition

    def snapshot(self) -> dict[str, Health]:
        """Health of every observed target."""
        return {target: s.health for target, s in self.states.items()}

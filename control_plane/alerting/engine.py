"""The built-in alert engine (for users without Alertmanager): rule state and notifications, pure.

One call of `evaluate` is one evaluation tick. Per alert instance (a rule plus the labels of one
sample, identified by its fingerprint) the life cycle mirrors Prometheus + Alertmanager:

- condition true → `pending`; true for `for_s` → `firing` (a `for_s` of 0 fires at once);
  a pending alert whose condition clears is dropped without a word;
- the first tick an unsilenced alert is firing sends exactly one `firing` notification; while it
  keeps firing, a `repeat` goes out only when `repeat_interval_s` has passed since the last one;
- condition false while firing → `resolved` with exactly one `resolved` notification, and only if
  a `firing` one was sent (nobody is told of the end of something they never heard of);
- a silenced alert keeps its state but sends nothing; if it is still firing when the silence
  ends, the `firing` notification (or the due repeat) goes out then. A resolve is sent even under a
  silence once a `firing` went out: a silence cuts noise, it must not leave a page open forever;
- resolved alerts are kept for `keep_resolved_s` for `GET /v1/alerts`, then dropped; the same
  labels firing again later are a new episode.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from control_plane.alerting.observation import Observation
from control_plane.alerting.silence_rules import Silence, muting_silences

DEFAULT_REPEAT_INTERVAL_S = 4 * 3600.0  # Alertmanager's default repeat_interval
DEFAULT_KEEP_RESOLVED_S = 3600.0


class AlertStatus(StrEnum):
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


class NotificationKind(StrEnum):
    FIRING = "firing"
    REPEAT = "repeat"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Sample:
    """One instance of a rule's condition being true, e.g. labels {"site": "icheon"}."""

    labels: Mapping[str, str] = field(default_factory=dict)
    value: float = 1.0


@dataclass(frozen=True, slots=True)
class AlertRule:
    """A condition over an `Observation`, with the same name, `for` and labels as in alerts.yml."""

    name: str
    severity: str  # critical | warning | info
    for_s: float
    expr: Callable[[Observation], Sequence[Sample]]
    summary: str  # str.format template over the alert's labels and {value}
    description: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)  # extra static labels


@dataclass(frozen=True, slots=True)
class AlertState:
    """One alert instance's state between ticks (stored in the `alerts` table)."""

    fingerprint: str
    labels: Mapping[str, str]  # includes alertname and severity
    annotations: Mapping[str, str]
    status: AlertStatus
    active_since: datetime  # when the condition became true for this episode
    value: float = 1.0
    fired_at: datetime | None = None
    last_notified_at: datetime | None = None  # None: no firing notification sent this episode
    resolved_at: datetime | None = None
    silenced_by: tuple[str, ...] = ()

    @property
    def alertname(self) -> str:
        return self.labels["alertname"]


@dataclass(frozen=True, slots=True)
class Notification:
    kind: NotificationKind
    fingerprint: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime  # when it started firing
    ends_at: datetime | None = None  # set on `resolved`


def fingerprint(alertname: str, labels: Mapping[str, str]) -> str:
    """A stable id of an alert instance: a hash of its name and sorted labels (not `hash()`,
    which changes between processes)."""
    items = sorted({**labels, "alertname": alertname}.items())
    digest = hashlib.sha256("\x1f".join(f"{k}\x1e{v}" for k, v in items).encode())
    return digest.hexdigest()[:16]


def evaluate(
    rules: Sequence[AlertRule],
    observation: Observation,
    states: Mapping[str, AlertState],
    silences: Sequence[Silence],
    now: datetime,
    repeat_interval_s: float = DEFAULT_REPEAT_INTERVAL_S,
    keep_resolved_s: float = DEFAULT_KEEP_RESOLVED_S,
) -> tuple[dict[str, AlertState], list[Notification]]:
    """Run one tick: return every alert's new state (by fingerprint) and the notifications to send."""
    new_states: dict[str, AlertState] = {}
    notifications: list[Notification] = []
    for rule, sample in _active_samples(rules, observation):
        labels = alert_labels(rule, sample)
        fp = fingerprint(rule.name, labels)
        if fp in new_states:
            continue  # a rule naming the same labels twice is one alert
        state = _advance_active(rule, labels, sample.value, states.get(fp), fp, now)
        state = replace(state, silenced_by=tuple(muting_silences(labels, silences, now)))
        state, note = _notify_active(state, now, repeat_interval_s)
        new_states[fp] = state
        if note is not None:
            notifications.append(note)
    for fp, prev in states.items():
        if fp in new_states:
            continue
        state, note = _advance_inactive(prev, now, keep_resolved_s)
        if state is not None:
            new_states[fp] = state
        if note is not None:
            notifications.append(note)
    return new_states, notifications


def alert_labels(rule: AlertRule, sample: Sample) -> dict[str, str]:
    """The labels an alert instance carries (what silences match and receivers see)."""
    return {**rule.labels, **sample.labels, "alertname": rule.name, "severity": rule.severity}


def firing_counts(rules: Iterable[AlertRule], states: Iterable[AlertState]) -> dict[str, int]:
    """Firing alerts per rule name, zero included (for the `drctl_alerts_firing{alert}` gauge)."""
    counts = {rule.name: 0 for rule in rules}
    for state in states:
        if state.status is AlertStatus.FIRING:
            counts[state.alertname] = counts.get(state.alertname, 0) + 1
    return counts


def render(template: str, labels: Mapping[str, str], value: float) -> str:
    """Fill `{label}` and `{value}` placeholders; a label the alert lacks renders empty."""
    return template.format_map(_Vars({**labels, "value": value}))


class _Vars(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return ""


def _active_samples(
    rules: Sequence[AlertRule], observation: Observation
) -> Iterable[tuple[AlertRule, Sample]]:
    for rule in rules:
        for sample in rule.expr(observation):
            yield rule, sample


def _advance_active(
    rule: AlertRule,
    labels: Mapping[str, str],
    value: float,
    prev: AlertState | None,
    fp: str,
    now: datetime,
) -> AlertState:
    annotations = {
        "summary": render(rule.summary, labels, value),
        "description": render(rule.description, labels, value),
    }
    if prev is None or prev.status is AlertStatus.RESOLVED:
        state = AlertState(fp, labels, annotations, AlertStatus.PENDING, active_since=now, value=value)
    else:
        state = replace(prev, annotations=annotations, value=value)
    if state.status is AlertStatus.PENDING and (now - state.active_since).total_seconds() >= rule.for_s:
        state = replace(state, status=AlertStatus.FIRING, fired_at=now)
    return state


def _notify_active(
    state: AlertState, now: datetime, repeat_interval_s: float
) -> tuple[AlertState, Notification | None]:
    if state.status is not AlertStatus.FIRING or state.silenced_by:
        return state, None
    if state.last_notified_at is None:
        kind = NotificationKind.FIRING
    elif (now - state.last_notified_at).total_seconds() >= repeat_interval_s:
        kind = NotificationKind.REPEAT
    else:
        return state, None
    state = replace(state, last_notified_at=now)
    return state, _notification(kind, state)


def _advance_inactive(
    prev: AlertState, now: datetime, keep_resolved_s: float
) -> tuple[AlertState | None, Notification | None]:
    if prev.status is AlertStatus.PENDING:
        return None, None
    if prev.status is AlertStatus.FIRING:
        state = replace(prev, status=AlertStatus.RESOLVED, resolved_at=now)
        note = _notification(NotificationKind.RESOLVED, state) if prev.last_notified_at else None
        return state, note
    assert prev.resolved_at is not None
    if (now - prev.resolved_at).total_seconds() >= keep_resolved_s:
        return None, None
    return prev, None


def _notification(kind: NotificationKind, state: AlertState) -> Notification:
    assert state.fired_at is not None
    return Notification(
        kind, state.fingerprint, state.labels, state.annotations, state.fired_at, state.resolved_at
    )

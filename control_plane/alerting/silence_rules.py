"""Silences: label matchers with a time window that mute alert notifications (Alertmanager-style).

A matcher compares one label: equality, or a regular expression that must match the whole value
(anchored, as in Alertmanager); `is_equal=False` negates it (`!=`, `!~`). A missing label matches
as the empty string. A silence mutes an alert while `starts_at <= now < ends_at` and all of its
matchers match the alert's labels.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from control_plane.domain import FieldError, InvalidInput


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True  # False: the label must NOT match (`!=` / `!~`)
    _pattern: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.name:
            raise InvalidInput("invalid matcher", [FieldError("name", "must not be empty")])
        if self.is_regex:
            try:
                # slots + frozen: set the cached compiled pattern past the frozen guard.
                object.__setattr__(self, "_pattern", re.compile(self.value))
            except re.error as exc:
                raise InvalidInput(
                    "invalid matcher", [FieldError("value", f"not a regular expression: {exc}")]
                ) from None

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        hit = self._pattern.fullmatch(actual) is not None if self._pattern else actual == self.value
        return hit == self.is_equal


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str = ""

    def __post_init__(self) -> None:
        errors: list[FieldError] = []
        if not self.matchers:
            errors.append(FieldError("matchers", "a silence needs at least one matcher"))
        if self.ends_at <= self.starts_at:
            errors.append(FieldError("ends_at", "must be after starts_at"))
        if errors:
            raise InvalidInput("invalid silence", errors)

    def is_active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def mutes(self, labels: Mapping[str, str], now: datetime) -> bool:
        """Whether this silence mutes an alert with `labels` at `now`."""
        return self.is_active(now) and all(m.matches(labels) for m in self.matchers)


def muting_silences(labels: Mapping[str, str], silences: Iterable[Silence], now: datetime) -> list[str]:
    """Ids of the silences muting an alert with `labels` at `now` (empty: not silenced)."""
    return [s.id for s in silences if s.mutes(labels, now)]


def active_silences(silences: Sequence[Silence], now: datetime) -> list[Silence]:
    """The silences in effect at `now` (expired and future ones left out)."""
    return [s for s in silences if s.is_active(now)]

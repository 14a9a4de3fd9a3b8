"""Ramped failback: reopen a site to a growing share of its orders instead of all at once.

A site coming back after an outage gets a weight that grows linearly from `start` (10%) to 100%
over the ramp's duration; each order that routing would send it is admitted with that
probability, and otherwise goes to the next-best site. A cold DC that falls over again under a
full hour's backlog at once is the failure this avoids. The random draw is the caller's, so tests
and replays are deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

DEFAULT_START = 0.1


def ramp_weight(
    started_at: datetime, now: datetime, duration_s: float, start: float = DEFAULT_START
) -> float:
    """The share of orders the site takes `now`: `start` at `started_at`, 1.0 from the end on.

    A zero duration means no ramp (1.0 at once); a `now` before `started_at` (clock skew between
    replicas) reads as the ramp's start.
    """
    if not 0.0 <= start <= 1.0:
        raise ValueError(f"ramp start must be within [0, 1], got {start}")
    if duration_s < 0:
        raise ValueError(f"ramp duration must not be negative, got {duration_s}")
    if duration_s == 0:
        return 1.0
    progress = (now - started_at).total_seconds() / duration_s
    progress = min(1.0, max(0.0, progress))
    return start + (1.0 - start) * progress


def admit_under_ramp(weight: float, draw: float) -> bool:
    """Whether one order goes to the ramping site, given a uniform `draw` in [0, 1)."""
    if not 0.0 <= draw < 1.0:
        raise ValueError(f"draw must be within [0, 1), got {draw}")
    return draw < weight


@dataclass(frozen=True, slots=True)
class Ramp:
    """A failback ramp in progress for one site."""

    site: str
    started_at: datetime
    duration_s: float
    start: float = DEFAULT_START

    def weight(self, now: datetime) -> float:
        return ramp_weight(self.started_at, now, self.duration_s, self.start)

    def finished(self, now: datetime) -> bool:
        """Whether the ramp is over and the site can be treated as fully open (ramp record dropped)."""
        return self.weight(now) >= 1.0

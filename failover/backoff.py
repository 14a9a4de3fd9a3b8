"""Retry delays for held orders and pending DC cancels: capped exponential with jitter."""

from __future__ import annotations

import random


def retry_delay_s(attempt: int, base_s: float, max_s: float, rnd: random.Random | None = None) -> float:
    """Delay before retry number `attempt` (1-based): base·2^(n-1), capped, with ±20 % jitter.

    Jitter keeps a batch of held orders from hammering a DC that has just come back all at once.
    """
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    delay = min(max_s, base_s * 2 ** min(attempt - 1, 30))
    r = rnd.random() if rnd is not None else random.random()
    return max(0.0, delay * (0.8 + 0.4 * r))

"""Everything the status page shows, read once per refresh from the same functions the API uses."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from control_plane.alerting import endpoints as alerting
from control_plane.auth.deps import Principal
from control_plane.dashboard import repository as repo
from control_plane.drills.schemas import DrillOut
from control_plane.monitoring import endpoints as monitoring
from control_plane.operations import endpoints as operations
from control_plane.world import endpoints as world

SERIES_TTL_S = 10.0  # the sparklines are per minute: no need to count an hour of orders every second
OPEN_INCIDENTS = 10
HELD_SHOWN = 8
DRILLS_SHOWN = 5


@dataclass
class SeriesCache:
    """The last hour's per-minute counts, recomputed at most every `SERIES_TTL_S` in this process."""

    _at: float = -1e9
    _value: tuple[datetime, list[int], list[int]] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(
        self, compute: Callable[[], tuple[datetime, list[int], list[int]]]
    ) -> tuple[datetime, list[int], list[int]]:
        with self._lock:
            if self._value is None or time.monotonic() - self._at > SERIES_TTL_S:
                self._value, self._at = compute(), time.monotonic()
            return self._value


def sparkline(values: list[int], width: int = 240, height: int = 40) -> dict[str, Any]:
    """SVG polyline points for a series, scaled to its own maximum (at least 1)."""
    top = max(max(values, default=0), 1)
    step = width / max(len(values) - 1, 1)
    points = " ".join(
        f"{i * step:.1f},{height - 2 - (v / top) * (height - 4):.1f}" for i, v in enumerate(values)
    )
    return {"points": points, "max": max(values, default=0), "last": values[-1] if values else 0,
            "total": sum(values), "width": width, "height": height}  # fmt: skip


def board(
    ctx: Any, session: Session, who: Principal, drills: list[DrillOut], series: SeriesCache, now: datetime
) -> dict[str, Any]:
    """The page's data; `drills` read beforehand (their service opens its own session, and SQLite
    lets one transaction at a time hold the file)."""
    sites = [s.model_dump() for s in world.list_sites(ctx, session, who)]
    backlog = repo.backlog_by_site(session)
    held_breakers = {b.name: b.held for b in world.list_breakers(ctx, who)}
    for s in sites:
        s["backlog"] = backlog.get(s["code"], 0)
        s["breaker_held"] = held_breakers.get(s["code"], False)
        s["alarm"] = s["health"] == "down" or s["breaker"] == "open" or not s["accepting"]
        s["warn"] = not s["alarm"] and (s["health"] in ("degraded", "unknown") or s["impaired"])
    incidents = []
    for row in operations.list_incidents(session, who, "open", OPEN_INCIDENTS):
        incidents.append(operations.get_incident(row.id, session, who).model_dump())
    held_total, held = repo.held_orders(session, HELD_SHOWN)
    start, orders, reroutes = series.get(lambda: repo.per_minute(session, now))
    return {
        "now": now,
        "sites": sites,
        "integrations": [i.model_dump() for i in monitoring.list_integrations(session, who)],
        "incidents": incidents,
        "held_total": held_total,
        "held": held,
        "notices": repo.notice_counts(session),
        "alerts": [a.model_dump() for a in alerting.list_alerts(session, who, "firing")],
        "drills": [d.model_dump() for d in drills],
        "series_start": start,
        "orders_per_min": sparkline(orders),
        "reroutes_per_min": sparkline(reroutes),
    }

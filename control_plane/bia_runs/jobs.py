"""The BIA as a scheduled batch job: the leader re-runs it over the store's order history on a
schedule and after a world load, so tiers, RTOs, RPOs and expected demand stay current.

At most one attempt per period and per world load (a failed one waits for the next), none while a
run is going, and none over a store without orders in the window (a new world has no history yet).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bia.params import BiaParams
from control_plane.bia_runs.service import BiaRunner
from control_plane.store.tables import BiaRunRow, OrderRow
from control_plane.world import repository as world_repo

log = logging.getLogger("drctl.bia")
ACTOR = "drctl:bia-schedule"


class BiaSchedule:
    def __init__(
        self,
        runner: BiaRunner,
        sessions: sessionmaker[Session],
        clock: Callable[[], datetime],
        every_s: float,
        days: int,
    ) -> None:
        self._runner = runner
        self._sessions = sessions
        self._clock = clock
        self._every = timedelta(seconds=every_s)
        self._days = days

    def due(self, now: datetime) -> str | None:
        """Why a run is due now (None: it is not)."""
        with self._sessions() as s:
            latest = s.scalar(select(BiaRunRow).order_by(BiaRunRow.id.desc()).limit(1))
            loaded_at = world_repo.loaded_at(s)
            if latest is not None and latest.status == "running":
                return None
            if loaded_at is None:
                return None
            since = now - timedelta(days=self._days)
            if not s.scalar(select(func.count()).select_from(OrderRow).where(OrderRow.placed_at >= since)):
                return None
        if latest is None:
            return "no BIA has run yet"
        if latest.created_at < loaded_at:
            return f"the world was loaded at {loaded_at.isoformat()}, after the last BIA"
        if now - latest.created_at >= self._every:
            return f"the last BIA is older than {self._every}"
        return None

    def check(self, leading: Any = None) -> int | None:
        """Start a run when one is due; its id."""
        now = self._clock()
        why = self.due(now)
        if why is None:
            return None
        run_id, _ = self._runner.start(ACTOR, self._days, BiaParams())
        log.warning("BIA run %s started: %s", run_id, why)
        return run_id

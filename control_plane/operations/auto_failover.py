"""Automatic failover policy: `off`, `propose` (open an incident proposing it) or `on` (perform it).

A site whose breaker has not been closed for `after_s` seconds (open, or half-open between failed
trials) is due. `on` goes through the same operation and safety rules as an operator's failover;
a refusal is recorded on the incident, not forced. Every replica may run the check: the one-change-
per-site lock lets one failover through.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Literal

from sqlalchemy.orm import Session, sessionmaker

from control_plane.domain import Actor, BreakerState, Conflict, DomainError
from control_plane.operations import repository as incident_repo
from control_plane.operations.service import SiteOperations
from control_plane.world.state import SiteStateCache
from failover.breakers import BreakerBoard

log = logging.getLogger("drctl.auto_failover")
Mode = Literal["off", "propose", "on"]
ACTOR = Actor("auto-failover")


class AutoFailover:
    def __init__(
        self,
        mode: Mode,
        after_s: float,
        sites: SiteStateCache,
        board: BreakerBoard,
        operations: SiteOperations,
        sessions: sessionmaker[Session],
        clock: Callable[[], datetime],
    ) -> None:
        self._mode = mode
        self._after_s = after_s
        self._sites = sites
        self._board = board
        self._ops = operations
        self._sessions = sessions
        self._clock = clock
        self._unhealthy_since: dict[str, datetime] = {}
        self._acted: set[str] = set()  # sites handled in this outage; cleared when the breaker closes

    def check(self) -> None:
        if self._mode == "off":
            return
        now = self._clock()
        for state in self._sites.snapshot():
            code = state.site.code
            if self._board.get(code).state is BreakerState.CLOSED:
                self._unhealthy_since.pop(code, None)
                self._acted.discard(code)
                continue
            since = self._unhealthy_since.setdefault(code, now)
            if not state.accepting or code in self._acted or (now - since).total_seconds() < self._after_s:
                continue
            self._acted.add(code)
            self._act(code, (now - since).total_seconds(), now)

    def _act(self, code: str, seconds: float, now: datetime) -> None:
        reason = f"breaker for {code} not closed for {seconds:.0f}s (policy {self._mode})"
        if self._mode == "propose":
            with self._sessions.begin() as s:
                incident = incident_repo.ensure_open_incident(
                    s, "site_outage", code, "breaker", f"{code} unreachable: failover proposed", now
                )
                incident_repo.add_event(s, incident.id, now, "failover_proposed", reason)
            log.warning("failover proposed: %s", reason)
            return
        try:
            self._ops.failover(ACTOR, code, reason, None, dry_run=False, force=False, trigger="breaker")
            log.warning("automatic failover of %s: %s", code, reason)
        except Conflict as exc:
            with self._sessions.begin() as s:
                incident = incident_repo.ensure_open_incident(
                    s, "site_outage", code, "breaker", f"{code} unreachable", now
                )
                incident_repo.add_event(s, incident.id, now, "failover_refused", f"{exc} [rule {exc.rule}]")
            log.error("automatic failover of %s refused by %s", code, exc.rule)
        except DomainError:
            log.exception("automatic failover of %s failed", code)
